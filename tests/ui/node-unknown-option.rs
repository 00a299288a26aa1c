use workflow::prelude::*;

#[step]
fn double(x: &u32) -> u32 {
    x * 2
}

workflow! {
    /// Options a node does not have.
    Options(x: u32) -> u32 {
        #[node(retry = 3)]
        let a = double(x);
        #[node(on_failure = ignore)]
        let b = double(a);
        #[nod(retries = 3)]
        let c = double(b);
        #[node(on_failure = skip, fallback = 0)]
        let d = double(c);
        double(d)
    }
}

fn main() {}
