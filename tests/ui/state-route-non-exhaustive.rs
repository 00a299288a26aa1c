use workflow::prelude::*;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Draft {
    score: u32,
}

enum Verdict {
    Pass,
    Revise,
    Reject,
}

#[step]
fn review(draft: &mut Draft) -> Verdict {
    match draft.score {
        0 => Verdict::Reject,
        1..=5 => Verdict::Revise,
        _ => Verdict::Pass,
    }
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
        } max 5 => END;
        revise -> review;
    }
}

fn main() {}
