use workflow::prelude::*;

#[derive(Clone, Default)]
struct Draft {
    score: u32,
}

#[step]
fn revise(draft: &mut Draft) {
    draft.score += 1;
}

fn main() {}
