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
    /// How the delays between attempts are randomised.
    pub jitter: Jitter,
    /// How long a successful output is reused for (`#[step(cache = "1h")]`), in a run
    /// with a store: a node whose step, step version and inputs match a cached output
    /// that has not expired takes that output instead of running. `None`: not cached.
    pub cache: Option<Duration>,
}

/// What happens when a node of a dataflow workflow fails for good (its last attempt
/// failed, or its error was permanent). Declared per node in `workflow!`:
///
/// ```
/// use workflow::prelude::*;
/// use workflow::OnFailure;
///
/// #[step]
/// fn fetch(url: &String) -> Result<String, StepError> {
///     Err(StepError::msg(format!("{url} is down")))
/// }
/// #[step]
/// fn offline_copy(url: &String) -> String {
///     format!("(cached copy of {url})")
/// }
/// #[step]
/// fn length(page: &String) -> usize {
///     page.len()
/// }
///
/// workflow! {
///     /// Falls back to a cached copy when the page is down.
///     pub PageLength(url: String) -> usize {
///         #[node(retries = 2, fallback_step = offline_copy(url))]
///         let page = fetch(url);
///         length(page)
///     }
/// }
///
/// let page = &PageLength::graph().nodes[0];
/// assert_eq!(page.policy.retries, 2);
/// assert!(matches!(page.on_failure, OnFailure::FallbackStep { step: "offline_copy", .. }));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OnFailure {
    /// The run fails, and the steps still running are cancelled. The default.
    #[default]
    Fail,
    /// The node is skipped, and so is every node downstream of it, except a node that reads
    /// it as `binding.ok()` (it gets `None`). Skipped nodes have no output; the run goes on
    /// and reports them (`step_skipped` events, [`RunSummary`](crate::RunSummary)).
    /// `#[node(on_failure = skip)]`.
    Skip,
    /// The node's output is the value `workflow!` gives:
    /// `#[node(fallback = Meta::default())]`.
    FallbackValue,
    /// Another step runs in its place, with its own policy:
    /// `#[node(fallback_step = cached(url))]`.
    FallbackStep {
        /// The fallback step's name.
        step: &'static str,
        /// Its policy.
        policy: Policy,
    },
}

/// How the delay before a retry is randomised, so that many clients failing at once do not
/// retry in lockstep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// "Full jitter": the delay is drawn uniformly between zero and the backoff's delay
    /// for that attempt. The default.
    #[default]
    Full,
    /// The delay is exactly the backoff's.
    None,
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
        jitter: Jitter::Full,
        cache: None,
    };

    /// The backoff's delay before attempt number `attempt` (attempts count from 1; attempt
    /// 1 has no delay): the actual delay with [`Jitter::None`], its upper bound with
    /// [`Jitter::Full`].
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

impl Policy {
    /// The delay before attempt `attempt`, with the jitter applied: `draw` is a random
    /// number from the run's jitter source (see `RunOptions::jitter_seed`).
    pub(crate) fn jittered_delay_before(&self, attempt: u32, draw: u64) -> Duration {
        let cap = self.delay_before(attempt);
        match self.jitter {
            Jitter::None => cap,
            // `draw % (cap + 1)`: uniform enough for a 64-bit draw and any real cap. Whole
            // milliseconds (tokio's timer resolution), so the delay reported is the delay
            // waited; below a millisecond, nanoseconds.
            Jitter::Full if cap >= Duration::from_millis(1) => {
                let cap_millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
                Duration::from_millis(draw % cap_millis.saturating_add(1))
            }
            Jitter::Full => {
                let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(draw % cap_nanos.saturating_add(1))
            }
        }
    }
}
