//! Step policies: how often a step is retried, how long it waits between attempts, and how
//! long one attempt may take.

use std::time::Duration;

/// How a step is retried and timed out. Declared with `#[step(...)]`:
///
/// ```
/// use workflow::prelude::*;
/// use std::time::Duration;
///
/// #[step(retries = 3, backoff = "100ms..10s", timeout = "30s")]
/// async fn fetch(url: &String) -> Result<String, StepError> {
///     Ok(url.clone())
/// }
///
/// let policy = <fetch as Step>::POLICY;
/// assert_eq!(policy.retries, 3);
/// assert_eq!(policy.timeout, Some(Duration::from_secs(30)));
/// assert_eq!(policy.delay_before(2), Duration::from_millis(100)); // after the first failure
/// assert_eq!(policy.delay_before(3), Duration::from_millis(200)); // then doubling
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    /// How many times a failed attempt is retried (0: run once).
    pub retries: u32,
    /// The exponential backoff between attempts.
    pub backoff: Backoff,
    /// The longest one attempt may take; a timed-out attempt is cancelled and counts as a
    /// failure.
    pub timeout: Option<Duration>,
}

/// Exponential backoff: the first retry waits `min`, each next one twice as long, never more
/// than `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Backoff {
    /// The delay before the first retry.
    pub min: Duration,
    /// The longest delay between two attempts.
    pub max: Duration,
}

impl Backoff {
    /// The backoff used when a step declares retries but no `backoff`: 100 ms doubling up
    /// to 10 s.
    pub const DEFAULT: Backoff = Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_secs(10),
    };
}

impl Policy {
    /// No retries, no timeout: a failure fails the node at once.
    pub const DEFAULT: Policy = Policy {
        retries: 0,
        backoff: Backoff::DEFAULT,
        timeout: None,
    };

    /// The delay before attempt number `attempt` (attempts count from 1; attempt 1 has no
    /// delay).
    pub fn delay_before(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let doublings = (attempt - 2).min(63);
        let factor = 1u64 << doublings;
        let nanos = u64::try_from(self.backoff.min.as_nanos()).unwrap_or(u64::MAX);
        let delay = Duration::from_nanos(nanos.saturating_mul(factor));
        delay.min(self.backoff.max)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::DEFAULT
    }
}
