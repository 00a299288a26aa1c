use workflow::prelude::*;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Draft {
    score: u32,
}

#[step]
fn review(draft: &mut Draft) -> bool {
    draft.score > 5
}

#[step]
fn revise(draft: &mut Draft) {
    draft.score += 1;
}

workflow! {
    Review(draft: &mut Draft) {
        review => match {
            true => END,
            false => revise,
        } max 5 => revise;
        revise -> review;
    }
}

fn main() {}
