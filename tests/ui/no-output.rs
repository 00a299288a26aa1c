use workflow::prelude::*;

#[step]
fn draft(topic: &String) -> String {
    topic.clone()
}

workflow! {
    Blog(topic: String) -> String {
        let post = draft(topic);
    }
}

fn main() {}
