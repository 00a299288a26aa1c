//! A step that fails twice, then succeeds, and its workflow: shared by the tests of
//! retries and of tracing spans.

use std::sync::atomic::{AtomicUsize, Ordering};

use workflow::prelude::*;

/// Counts the attempts made.
#[derive(Default)]
pub(crate) struct Attempts(pub(crate) AtomicUsize);

/// Fails its first two attempts.
#[step(retries = 3, backoff = "100ms..150ms", jitter = "none")]
pub(crate) fn flaky(ctx: &Attempts, x: u32) -> Result<u32, StepError> {
    let attempt = ctx.0.fetch_add(1, Ordering::SeqCst) + 1;
    if attempt < 3 {
        return Err(StepError::msg(format!("attempt {attempt} failed")));
    }
    Ok(x)
}

workflow! {
    /// Succeeds on the third attempt.
    pub(crate) Flaky(ctx: Attempts, x: u32) -> u32 {
        flaky(x)
    }
}
