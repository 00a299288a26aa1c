//! The code-review agent as a state graph: measure, find issues, suggest, score, and loop
//! through a revise step until the score reaches the threshold or the loop's bound is hit.

use workflow::prelude::*;

use crate::analysis::{self, AnalysisError, Review};

/// What `evaluate` decides after scoring a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The score reached the threshold.
    Good,
    /// Below the threshold: revise and measure again.
    Revise,
}

/// Parses the source and lists its functions.
#[step]
fn extract(review: &mut Review) -> Result<(), AnalysisError> {
    analysis::extract(review)
}

/// Measures each function: cyclomatic complexity, nesting, length.
#[step]
fn complexity(review: &mut Review) {
    analysis::complexity(review);
}

/// Finds the issues. Cached for a week: in a durable run, a round that meets a review state
/// seen before (the same source, measured the same way) takes the findings, and the route
/// after them, from the store instead of running again.
#[step(cache = "7d")]
fn detect(review: &mut Review) {
    analysis::detect(review);
}

/// Turns the issues into suggestions.
#[step]
fn suggest(review: &mut Review) {
    analysis::suggest(review);
}

/// Scores the round and decides whether another one is worth it.
#[step]
fn evaluate(review: &mut Review) -> Verdict {
    if analysis::evaluate(review) >= review.threshold {
        Verdict::Good
    } else {
        Verdict::Revise
    }
}

/// Applies the mechanical fixes it can, one kind per round.
#[step]
fn revise(review: &mut Review) {
    analysis::revise(review);
}

workflow! {
    /// Reviews a Rust source file, revising it until its score reaches the threshold (at
    /// most five rounds).
    pub(crate) CodeReview(review: &mut Review) {
        extract -> complexity -> detect -> suggest -> evaluate;
        evaluate => match {
            Verdict::Good => END,
            Verdict::Revise => revise,
        } max 5 => END;
        revise -> extract;
    }
}
