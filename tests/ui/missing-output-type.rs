use workflow::prelude::*;

#[step]
fn draft(topic: &String) -> String {
    topic.clone()
}

workflow! {
    Blog(topic: String) {
        draft(topic)
    }
}

fn main() {}
