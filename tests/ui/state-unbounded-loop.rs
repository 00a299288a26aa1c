use workflow::prelude::*;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Draft {
    score: u32,
}

enum Verdict {
    Pass,
    Revise,
}

#[step]
fn review(draft: &mut Draft) -> Verdict {
    if draft.score > 5 { Verdict::Pass } else { Verdict::Revise }
}

#[step]
fn revise(draft: &mut Draft) {
    draft.score += 1;
}

workflow! {
    Review(draft: &mut Draft) {
        review => match {
            Verdict::Pass => END,
            Verdict::Revise => revise,
        }
        revise -> review;
    }
}

fn main() {}
