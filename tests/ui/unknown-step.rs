use workflow::prelude::*;

#[step]
fn research(topic: &String) -> String {
    topic.clone()
}

workflow! {
    Blog(topic: String) -> String {
        reserch(topic)
    }
}

fn main() {}
