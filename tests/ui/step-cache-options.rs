use workflow::prelude::*;

#[step(cache = "soon")]
fn a(x: &u32) -> u32 {
    *x
}

#[step(cache = "0s")]
fn b(x: &u32) -> u32 {
    *x
}

#[step(cache = "1h", version = "2")]
fn c(x: &u32) -> u32 {
    *x
}

#[step(cache = "1h", version = -1)]
fn d(x: &u32) -> u32 {
    *x
}

#[step(cache = "1h")]
fn approval(draft: &String) -> Pause<String, bool> {
    Pause::new(draft.clone())
}

fn main() {}
