use serde::{Deserialize, Serialize};
use workflow::prelude::*;

#[derive(Serialize, Deserialize)]
struct Topic(String);

#[derive(Serialize, Deserialize)]
struct Research(Vec<String>);

#[derive(Serialize, Deserialize)]
struct Post(String);

#[step]
fn research(topic: &Topic) -> Research {
    Research(vec![topic.0.clone()])
}

#[step]
fn blog_post(research: &Research) -> Post {
    Post(research.0.join(" "))
}

workflow! {
    Blog(topic: Topic) -> Post {
        let research = research(topic);
        blog_post(topic)
    }
}

fn main() {}
