use workflow::prelude::*;

#[step]
fn generic<T: Clone>(x: &T) -> u32 {
    let _ = x;
    1
}

#[step]
fn mutates(x: &mut u32, y: &u32) -> u32 {
    *x + y
}

#[step]
fn context_by_value(ctx: String, x: &u32) -> u32 {
    let _ = ctx;
    *x
}

#[step]
fn opaque(x: &u32) -> impl std::fmt::Display {
    *x
}

fn main() {}
