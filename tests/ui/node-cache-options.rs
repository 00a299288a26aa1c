use workflow::prelude::*;

#[step]
fn double(x: &u32) -> u32 {
    x * 2
}

workflow! {
    /// A node's `cache` takes a duration or "off".
    pub Doubled(x: u32) -> u32 {
        #[node(cache = "never")]
        let y = double(x);
        #[node(cache = 60)]
        double(y)
    }
}

fn main() {}
