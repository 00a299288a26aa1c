use workflow::prelude::*;

#[step]
fn research(topic: &String) -> String {
    topic.clone()
}

#[step]
fn write(notes: &String) -> String {
    notes.clone()
}

workflow! {
    Blog(topic: String) -> String {
        let research = research(topic);
        write(reserch)
    }
}

fn main() {}
