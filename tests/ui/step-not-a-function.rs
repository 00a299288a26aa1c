use workflow::prelude::*;

#[step]
struct Research {
    notes: Vec<String>,
}

#[step]
impl Research {}

fn main() {}
