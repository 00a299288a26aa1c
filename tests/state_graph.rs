//! State graphs: edges, routes, loop bounds, the step limit, and subworkflows both ways.

use serde::{Deserialize, Serialize};
use workflow::prelude::*;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Draft {
    text: String,
    score: u32,
    log: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    Revise,
}

#[step]
fn write(draft: &mut Draft) {
    draft.text = "draft".into();
    draft.log.push("write".into());
}

#[step]
fn review(draft: &mut Draft) -> Verdict {
    draft.log.push(format!("review {}", draft.score));
    if draft.score >= 3 {
        Verdict::Pass
    } else {
        Verdict::Revise
    }
}

#[step]
async fn revise(draft: &mut Draft) -> Result<(), StepError> {
    draft.score += 1;
    draft.log.push("revise".into());
    Ok(())
}

workflow! {
    /// Writes, then reviews and revises until the review passes.
    ReviewLoop(draft: &mut Draft) {
        write -> review;
        review => match {
            Verdict::Pass => END,
            Verdict::Revise => revise,
        } max 5 => END;
        revise -> review;
    }
}

#[tokio::test]
async fn the_loop_runs_until_the_route_says_end() {
    let out = ReviewLoop::new().run(Draft::default()).await.unwrap();
    assert_eq!(out.score, 3);
    assert_eq!(
        out.log,
        [
            "write", "review 0", "revise", "review 1", "revise", "review 2", "revise", "review 3"
        ]
    );
    println!("{}", ReviewLoop::graph().to_mermaid());
}
