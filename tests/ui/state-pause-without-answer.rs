use workflow::prelude::*;

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Post {
    pub text: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub enum Decision {
    Approve,
    Edit(String),
}

#[step]
fn write(post: &mut Post) {
    post.text.push_str("draft");
}

/// A pause in a state graph: its answer must say how it changes the state.
#[step]
fn review(post: &mut Post) -> Pause<String, Decision> {
    Pause::new(post.text.clone())
}

workflow! {
    Editing(post: &mut Post) {
        write -> review;
        review => match {
            Decision::Approve => END,
            Decision::Edit(_) => write,
        } max 3 => END;
    }
}

fn main() {}
