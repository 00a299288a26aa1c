use workflow::prelude::*;

#[step]
fn double(x: &u32) -> u32 {
    x * 2
}

workflow! {
    /// Every policy value at a call site is checked like the step's own.
    Policies(x: u32) -> u32 {
        #[node(timeout = "0s")]
        let a = double(x);
        #[node(timeout = "5 parsecs")]
        let b = double(a);
        #[node(backoff = "10s..1s")]
        let c = double(b);
        #[node(retries = -1)]
        let d = double(c);
        #[node(retries = 99999999999)]
        let e = double(d);
        #[node(retries = 2, retries = 3)]
        let f = double(e);
        double(f)
    }
}

fn main() {}
