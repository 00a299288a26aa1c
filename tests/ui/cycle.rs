use workflow::prelude::*;

#[step]
fn first(x: &u32, last: &u32) -> u32 {
    x + last
}

#[step]
fn middle(a: &u32) -> u32 {
    *a
}

workflow! {
    Loop(x: u32) -> u32 {
        let a = first(x, c);
        let b = middle(a);
        let c = middle(b);
        c
    }
}

fn main() {}
