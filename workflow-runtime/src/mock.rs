//! A deterministic stand-in for an LLM client, for examples and tests (feature `mock`).
//!
//! The same prompt always gets the same completion. Latency and failures are scripted by
//! matching a substring of the prompt's first line (its instruction, so that text quoted
//! from earlier answers below it never matches), so a test can make exactly one step slow
//! or failing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A deterministic mock LLM.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use workflow::mock::MockLlm;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let llm = MockLlm::new()
///     .with_latency(Duration::from_millis(50))
///     .slow_when("linkedin", Duration::from_secs(2))
///     .fail_when("email", 1);
///
/// let a = llm.complete("Summarise: rust").await.unwrap();
/// let b = llm.complete("Summarise: rust").await.unwrap();
/// assert_eq!(a, b); // deterministic
///
/// assert!(llm.complete("write an email").await.is_err()); // the first call fails
/// assert!(llm.complete("write an email").await.is_ok()); // then it recovers
/// assert_eq!(llm.calls(), 4);
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MockLlm {
    latency: Duration,
    slow: Vec<(String, Duration)>,
    failures: Mutex<Vec<Failure>>,
    calls: AtomicU64,
}

#[derive(Debug)]
struct Failure {
    pattern: String,
    remaining: Option<u32>,
    permanent: bool,
}

/// The error a [`MockLlm`] call fails with when told to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockLlmError {
    /// The pattern whose rule made the call fail.
    pub pattern: String,
    /// Whether the failure is scripted as permanent (a retry cannot help).
    pub permanent: bool,
}

impl std::fmt::Display for MockLlmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.permanent {
            "permanent"
        } else {
            "transient"
        };
        write!(
            f,
            "mock LLM: scripted {kind} failure for prompts containing {:?}",
            self.pattern
        )
    }
}

impl std::error::Error for MockLlmError {}

impl MockLlm {
    /// A mock that answers every prompt at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call takes `latency` (on tokio's clock).
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Calls whose prompt's first line contains `pattern` take `latency` instead.
    #[must_use]
    pub fn slow_when(mut self, pattern: impl Into<String>, latency: Duration) -> Self {
        self.slow.push((pattern.into(), latency));
        self
    }

    /// The first `times` calls whose prompt's first line contains `pattern` fail (transient failures);
    /// later ones succeed.
    #[must_use]
    pub fn fail_when(self, pattern: impl Into<String>, times: u32) -> Self {
        self.with_failure(pattern.into(), Some(times), false)
    }

    /// Every call whose prompt's first line contains `pattern` fails.
    #[must_use]
    pub fn always_fail_when(self, pattern: impl Into<String>) -> Self {
        self.with_failure(pattern.into(), None, false)
    }

    /// Every call whose prompt's first line contains `pattern` fails with a permanent
    /// error.
    #[must_use]
    pub fn permanently_fail_when(self, pattern: impl Into<String>) -> Self {
        self.with_failure(pattern.into(), None, true)
    }

    fn with_failure(self, pattern: String, remaining: Option<u32>, permanent: bool) -> Self {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Failure {
                pattern,
                remaining,
                permanent,
            });
        self
    }

    /// How many calls were made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Completes a prompt: waits the scripted latency, then fails if a failure rule
    /// matches, else answers with a text that depends only on the prompt.
    pub async fn complete(&self, prompt: &str) -> Result<String, MockLlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let instruction = prompt.lines().next().unwrap_or("");
        let latency = self
            .slow
            .iter()
            .find(|(pattern, _)| instruction.contains(pattern.as_str()))
            .map_or(self.latency, |(_, latency)| *latency);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some(error) = self.scripted_failure(instruction) {
            return Err(error);
        }
        Ok(completion(prompt))
    }

    fn scripted_failure(&self, instruction: &str) -> Option<MockLlmError> {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let rule = failures.iter_mut().find(|rule| {
            instruction.contains(rule.pattern.as_str()) && rule.remaining.is_none_or(|n| n > 0)
        })?;
        if let Some(remaining) = &mut rule.remaining {
            *remaining -= 1;
        }
        Some(MockLlmError {
            pattern: rule.pattern.clone(),
            permanent: rule.permanent,
        })
    }
}

const WORDS: &[&str] = &[
    "robust",
    "typed",
    "workflows",
    "compile",
    "graph",
    "steps",
    "rust",
    "agents",
    "parallel",
    "durable",
    "checkpoints",
    "retries",
    "latency",
    "teams",
    "ship",
    "faster",
    "errors",
    "caught",
    "early",
    "pipelines",
    "data",
    "reliable",
    "simple",
    "clear",
    "scales",
    "cores",
    "events",
    "stream",
    "live",
    "safe",
    "async",
    "tokio",
    "builds",
    "trust",
    "insight",
    "results",
    "quality",
    "review",
    "publish",
    "readers",
];

/// A deterministic completion: the prompt's first line, then words chosen by a hash of the
/// whole prompt.
fn completion(prompt: &str) -> String {
    let mut state = fnv1a(prompt.as_bytes()) | 1;
    let topic: String = prompt
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(60)
        .collect();
    let mut words = Vec::with_capacity(16);
    for _ in 0..12 {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let index = usize::try_from(state % WORDS.len() as u64).unwrap_or(0);
        words.push(WORDS[index]);
    }
    format!("{topic} | {}.", words.join(" "))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
