//! Where runs are kept: their records, each node's checkpoint, their event logs.
//!
//! A [`Store`] holds, per run: the workflow's name and structural hash, the input, the
//! status and timestamps ([`RunRecord`]); each completed node's serialized output, attempt
//! count and timings ([`Checkpoint`]); and the run's events, in sequence order. Two
//! implementations: [`MemoryStore`] (tests, and runs that need no durability) and, with
//! the `sqlite` feature, [`SqliteStore`] (one file, WAL mode, versioned schema).
//!
//! The guarantee every store gives: [`Store::checkpoint`] writes a node's output and its
//! "completed" event in one transaction, so after a crash a node is either completed, with
//! its output and event, or not, with neither. A write that fails (unknown run, an event
//! out of sequence, a broken disk) changes nothing.

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use crate::events::Event;
use crate::run::RunId;

/// The future a [`Store`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// How far a run has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started, not ended: running now, or interrupted by a crash (resumable).
    Running,
    /// Paused until outside input arrives.
    Waiting,
    /// Produced its output.
    Succeeded,
    /// Failed for good.
    Failed,
    /// Cancelled from its handle.
    Cancelled,
}

impl RunStatus {
    /// The status as stored: `running`, `waiting`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status a stored string names.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "running" => Self::Running,
            "waiting" => Self::Waiting,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the run has ended (nothing will change it any more).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A time, as microseconds since the Unix epoch (what stores keep).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Now, by the system clock.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }
}

/// A run as a store keeps it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub id: RunId,
    /// The workflow's name.
    pub workflow: String,
    /// The structural hash of the workflow's graph when the run started: a run resumes
    /// only under the same graph.
    pub graph_hash: String,
    /// The run's input, serialized.
    pub input: serde_json::Value,
    /// How far it has got.
    pub status: RunStatus,
    /// The run's output, once it succeeded.
    pub output: Option<serde_json::Value>,
    /// Why it failed, once it failed.
    pub error: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its record last changed.
    pub updated_at: Timestamp,
}

impl RunRecord {
    /// A new record, `running`, created now.
    pub fn new(
        id: RunId,
        workflow: impl Into<String>,
        graph_hash: impl Into<String>,
        input: serde_json::Value,
    ) -> Self {
        let now = Timestamp::now();
        Self {
            id,
            workflow: workflow.into(),
            graph_hash: graph_hash.into(),
            input,
            status: RunStatus::Running,
            output: None,
            error: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A completed node of a run: its output and how it got there.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The node's name.
    pub node: String,
    /// Its output, serialized.
    pub output: serde_json::Value,
    /// How many attempts it took.
    pub attempts: u32,
    /// When its first attempt started.
    pub started_at: Timestamp,
    /// When it completed.
    pub finished_at: Timestamp,
}

/// Why a store could not do what it was asked. Nothing was written.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// No run has this id.
    UnknownRun(RunId),
    /// A run with this id exists already.
    DuplicateRun(RunId),
    /// An event's sequence number is not the next one of its run: events are gapless.
    OutOfSequence {
        /// The run.
        run: RunId,
        /// The sequence number the store expected.
        expected: u64,
        /// The one it got.
        got: u64,
    },
    /// The node has a checkpoint already: a node completes once.
    AlreadyCompleted {
        /// The run.
        run: RunId,
        /// The node.
        node: String,
    },
    /// The run has ended: it takes no more writes.
    Ended(RunId),
    /// A stored value could not be read back (a corrupt or foreign database).
    Corrupt(String),
    /// The storage itself failed (disk, database, lock).
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownRun(id) => write!(f, "no run with id {id}"),
            Self::DuplicateRun(id) => write!(f, "a run with id {id} exists already"),
            Self::OutOfSequence { run, expected, got } => write!(
                f,
                "event {got} of run {run} is out of sequence: the next one is {expected}"
            ),
            Self::AlreadyCompleted { run, node } => {
                write!(f, "node `{node}` of run {run} is completed already")
            }
            Self::Ended(id) => write!(f, "run {id} has ended"),
            Self::Corrupt(message) => write!(f, "the store holds an unreadable value: {message}"),
            Self::Backend(error) => write!(f, "the store failed: {error}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(error) => Some(&**error),
            _ => None,
        }
    }
}

/// Checks that `events` continue a log of `len` events without a gap.
fn check_sequence(run: RunId, len: u64, events: &[Event]) -> Result<(), StoreError> {
    for (i, event) in events.iter().enumerate() {
        let expected = len + i as u64;
        if event.seq != expected {
            return Err(StoreError::OutOfSequence {
                run,
                expected,
                got: event.seq,
            });
        }
    }
    Ok(())
}

/// Where runs are kept. Every method is one transaction: it happens entirely or not at
/// all.
pub trait Store: Send + Sync + 'static {
    /// Records a new run (its events start at sequence 0).
    fn create_run(&self, run: RunRecord) -> StoreFuture<'_, ()>;

    /// Appends events to a run's log; their sequence numbers must continue it without a
    /// gap.
    fn append_events(&self, run: RunId, events: Vec<Event>) -> StoreFuture<'_, ()>;

    /// Records a completed node: its checkpoint and the events that report it (its
    /// "completed" event, and any before it not yet stored), together.
    fn checkpoint(
        &self,
        run: RunId,
        checkpoint: Checkpoint,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()>;

    /// Sets a run's status (with its output or error when it ends), and appends its last
    /// events, together.
    fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        output: Option<serde_json::Value>,
        error: Option<String>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()>;

    /// A run's record.
    fn run(&self, run: RunId) -> StoreFuture<'_, RunRecord>;

    /// The runs, newest first, at most `limit`.
    fn runs(&self, limit: usize) -> StoreFuture<'_, Vec<RunRecord>>;

    /// A run's checkpoints, in the order the nodes completed.
    fn checkpoints(&self, run: RunId) -> StoreFuture<'_, Vec<Checkpoint>>;

    /// A run's events from sequence number `from` on.
    fn events(&self, run: RunId, from: u64) -> StoreFuture<'_, Vec<Event>>;
}
