// Unused node outputs are rustc's `unused_variables` warning, at the binding; this file
// denies the lint to show it. Prefix the binding with `_` (or write `let _ =`) to run a step
// only for its effect.
#![deny(unused_variables)]

use workflow::prelude::*;

#[step]
fn draft(topic: &String) -> String {
    topic.clone()
}

#[step]
fn email(post: &String) -> String {
    post.clone()
}

workflow! {
    Blog(topic: String) -> String {
        let post = draft(topic);
        let email = email(post);
        let _ignored = email(post);
        let _ = email(post);
        post
    }
}

fn main() {}
