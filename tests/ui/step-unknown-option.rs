use workflow::prelude::*;

#[step(retires = 3)]
fn fetch(url: &String) -> String {
    url.clone()
}

#[step(timeout = "30s", colour = "red")]
fn parse(text: &String) -> String {
    text.clone()
}

#[step(retries = 3, retries = 4)]
fn store(text: &String) -> String {
    text.clone()
}

fn main() {}
