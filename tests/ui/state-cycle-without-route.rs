use workflow::prelude::*;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Counter {
    n: u32,
}

#[step]
fn start(counter: &mut Counter) {
    counter.n = 0;
}

#[step]
fn tick(counter: &mut Counter) {
    counter.n += 1;
}

#[step]
fn tock(counter: &mut Counter) {
    counter.n += 1;
}

workflow! {
    Clock(counter: &mut Counter) {
        start -> tick -> tock;
        tock -> tick;
    }
}

fn main() {}
