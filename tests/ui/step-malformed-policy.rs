use workflow::prelude::*;

#[step(timeout = "30x")]
fn a(x: &u32) -> u32 {
    *x
}

#[step(timeout = "0s")]
fn b(x: &u32) -> u32 {
    *x
}

#[step(backoff = "10s..100ms")]
fn c(x: &u32) -> u32 {
    *x
}

#[step(backoff = "100ms")]
fn d(x: &u32) -> u32 {
    *x
}

#[step(retries = 99999999999)]
fn e(x: &u32) -> u32 {
    *x
}

#[step(retries = "3")]
fn f(x: &u32) -> u32 {
    *x
}

#[step(retries = 2, jitter = "half")]
fn g(x: &u32) -> u32 {
    *x
}

fn main() {}
