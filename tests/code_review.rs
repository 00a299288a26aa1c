//! The code-review agent as a state graph: the loop stops at the threshold, the bound ends
//! it when the threshold is out of reach, and the final report is pinned.

#[path = "../examples/code_review/analysis.rs"]
mod analysis;
#[path = "../examples/code_review/review.rs"]
mod review;

use analysis::{DEFAULT_THRESHOLD, Review, SAMPLE};
use review::CodeReview;
use workflow::prelude::*;

async fn run(threshold: f64) -> (Review, Vec<Event>) {
    let handle = CodeReview::new().start(Review::new("config.rs", SAMPLE, threshold));
    let events = handle.events();
    let review = handle.await.expect("the review runs to the end");
    (review, events.collect().await)
}

fn scores(review: &Review) -> Vec<f64> {
    review.rounds.iter().map(|round| round.score).collect()
}

fn bound_hits(events: &[Event]) -> Vec<&EventKind> {
    events
        .iter()
        .map(|event| &event.kind)
        .filter(|kind| matches!(kind, EventKind::LoopBoundHit { .. }))
        .collect()
}

fn evaluations(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::StepSucceeded { node, .. } if node == "evaluate"))
        .count()
}

#[tokio::test]
async fn the_loop_stops_once_the_score_reaches_the_threshold() {
    let (review, events) = run(DEFAULT_THRESHOLD).await;
    assert_eq!(scores(&review), [7.0, 7.8, 8.1]);
    assert_eq!(evaluations(&events), 3);
    assert!(bound_hits(&events).is_empty());
    assert!(events.iter().any(|e| e.kind
        == EventKind::Routed {
            node: "evaluate".into(),
            arm: "Verdict::Good".into(),
            to: "END".into(),
        }));
    // Two revisions changed the source, which still parses.
    assert_ne!(review.source, SAMPLE);
    syn::parse_file(&review.source).expect("the revised source parses");
    insta::assert_snapshot!("report_at_default_threshold", analysis::report(&review));
}

#[tokio::test]
async fn a_score_equal_to_the_threshold_passes() {
    let (review, events) = run(7.8).await;
    assert_eq!(scores(&review), [7.0, 7.8]);
    assert_eq!(evaluations(&events), 2);
    // Passing at once: nothing was revised.
    let (review, _) = run(7.0).await;
    assert_eq!(scores(&review), [7.0]);
    assert_eq!(review.source, SAMPLE);
}

#[tokio::test]
async fn an_unreachable_threshold_runs_into_the_bound() {
    let (review, events) = run(9.5).await;
    assert_eq!(scores(&review), [7.0, 7.8, 8.1, 8.2, 8.2]);
    assert_eq!(evaluations(&events), 5);
    assert_eq!(
        bound_hits(&events),
        [&EventKind::LoopBoundHit {
            node: "evaluate".into(),
            max: 5,
            arm: "Verdict::Revise".into(),
            to: "END".into(),
        }]
    );
    // The run ended right after the bound was hit: no sixth round, no revise after it.
    let last_steps: Vec<_> = events
        .iter()
        .rev()
        .filter_map(|e| match &e.kind {
            EventKind::StepStarted { node, .. } => Some(node.as_ref()),
            _ => None,
        })
        .take(1)
        .collect();
    assert_eq!(last_steps, ["evaluate"]);
    insta::assert_snapshot!("report_at_the_bound", analysis::report(&review));
}

#[tokio::test]
async fn an_unparsable_file_fails_the_run_at_extract() {
    let handle = CodeReview::new().start(Review::new("broken.rs", "fn broken( {", 8.0));
    let error = handle.await.expect_err("the file does not parse");
    assert!(
        matches!(
            &error,
            RunError::Step {
                node: "extract",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("step `extract` failed: broken.rs:1:"),
        "{error}"
    );
}

#[test]
fn the_graph_renders_with_labelled_routes() {
    insta::assert_snapshot!("code_review_mermaid", CodeReview::graph().to_mermaid());
}
