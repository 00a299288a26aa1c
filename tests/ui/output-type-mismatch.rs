use workflow::prelude::*;

#[step]
fn count(topic: &String) -> usize {
    topic.len()
}

workflow! {
    Blog(topic: String) -> String {
        count(topic)
    }
}

fn main() {}
