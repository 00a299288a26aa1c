//! Where runs are kept: their records, their progress, their event logs.
//!
//! A [`Store`] holds, per run: the workflow's name and structural hash, the input, the
//! status and timestamps ([`RunRecord`]); the run's progress, which for a dataflow
//! workflow is each completed node's serialized output, attempt count and timings
//! ([`Checkpoint`]), and for a state graph the state after the last completed node
//! ([`StateCheckpoint`], only the latest kept); the outside input a paused run waits for
//! ([`Interrupt`]); and the run's events, in sequence order. Across runs, it keeps the
//! outputs of cached steps ([`CacheKey`], [`Store::cached`]). Two implementations:
//! [`MemoryStore`] (tests, and runs that need no durability) and, with the `sqlite`
#![cfg_attr(
    feature = "sqlite",
    doc = " feature, [`SqliteStore`] (one file, WAL mode, versioned schema)."
)]
#![cfg_attr(
    not(feature = "sqlite"),
    doc = " feature, `SqliteStore` (one file, WAL mode, versioned schema)."
)]
//!
//! The guarantee every store gives: progress and the events that report it are written in
//! one transaction ([`Store::checkpoint`], [`Store::save_state`], [`Store::answer`]), so
//! after a crash a node is either completed, with its output and event, or not, with
//! neither. Pausing ([`Store::suspend`]) and answering a pause ([`Store::answer`]) are
//! single transactions too: a run is never waiting without knowing for what. A write
//! that fails (unknown run, an event out of sequence, a broken disk) changes nothing.

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod queue;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
pub use queue::{Candidate, Claim, FINISH, Limit, Task, TaskInputs, TaskQueue, TaskResult};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use crate::events::Event;
use crate::run::RunId;

/// Opens the store `location` names: a `postgres://` or `postgresql://` URL is a
/// `PostgresStore` (feature `postgres`), anything else the path of a `SqliteStore` file
/// (feature `sqlite`). For programs whose users pick the store on the command line.
///
/// # Errors
///
/// When the store cannot be opened, or its kind is not compiled in.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
// Connecting to PostgreSQL awaits; without the `postgres` feature nothing does.
#[cfg_attr(not(feature = "postgres"), allow(clippy::unused_async))]
pub async fn open(location: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(std::sync::Arc::new(PostgresStore::connect(location).await?));
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::Backend(
            "a PostgreSQL URL needs the `postgres` feature".into(),
        ));
    }
    #[cfg(feature = "sqlite")]
    return Ok(std::sync::Arc::new(SqliteStore::open(location)?));
    #[cfg(not(feature = "sqlite"))]
    Err(StoreError::Backend(
        format!("`{location}` is not a PostgreSQL URL, and SQLite needs the `sqlite` feature")
            .into(),
    ))
}

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
    /// The statements its step asked to run with it ([`crate::transaction`]): the store
    /// runs them in the transaction that stores the checkpoint. Not kept: empty when read
    /// back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<Statement>,
}

/// A SQL statement a step asked to run in the transaction that stores its checkpoint
/// ([`crate::transaction`]): the SQL, with `$1`, `$2`, ... for its parameters, and their
/// values as JSON (bound as the column types ask: numbers, text, booleans, NULL; objects
/// and arrays as JSON).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Statement {
    /// The SQL.
    pub sql: String,
    /// The parameters' values, `$1` first.
    pub params: Vec<serde_json::Value>,
}

/// Where a run of a state graph has got: its state after the last completed node.
///
/// A store keeps only the latest one per run ([`Store::save_state`] replaces it), so its
/// storage does not grow with the number of steps.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateCheckpoint {
    /// How many nodes have completed: 1 after the first.
    pub step: u32,
    /// The node that completed last.
    pub node: String,
    /// The state after it, serialized.
    pub state: serde_json::Value,
    /// Per node index, how many times its route has been taken (the loop counters).
    pub rounds: Vec<u32>,
    /// The node that runs next; `None` when the next is the end.
    pub next: Option<String>,
    /// How many attempts the last node took.
    pub attempts: u32,
    /// When the last node's first attempt started.
    pub started_at: Timestamp,
    /// When the last node completed.
    pub finished_at: Timestamp,
    /// For a run that keeps its history: the JSON Patch (RFC 6902) that turns the
    /// previous state (the run's input, for the first node) into this one. The store
    /// appends it to the run's history ([`Store::history`]); [`Store::state`] returns
    /// `None` here.
    pub change: Option<serde_json::Value>,
    /// The statements the last node's step asked to run with it ([`crate::transaction`]),
    /// in the transaction that stores the state. Not kept: empty when read back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<Statement>,
}

/// One step of a state graph's history: how the node changed the state.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateChange {
    /// How many nodes had completed with this one: 1 for the first.
    pub step: u32,
    /// The node.
    pub node: String,
    /// The JSON Patch (RFC 6902) that turns the state before the node into the state after.
    pub patch: serde_json::Value,
}

/// A run paused until outside input arrives.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interrupt {
    /// The pause node.
    pub node: String,
    /// What the run asks for: the request payload, serialized.
    pub request: serde_json::Value,
    /// When the run paused.
    pub created_at: Timestamp,
}

/// What answering an [`Interrupt`] records ([`Store::answer`]): the pause node's
/// checkpoint (dataflow) or the state after it (state graph).
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// Completed nodes of a dataflow run, recorded as [`Store::checkpoint`] records them.
    Nodes(Vec<Checkpoint>),
    /// The state of a state-graph run, replacing the previous one as
    /// [`Store::save_state`] does.
    State(StateCheckpoint),
}

/// What a cached step output is kept under: the step, its version and its inputs.
///
/// Two keys are the same cache entry only if all three are equal: the inputs are compared
/// as text, not by a hash, so two different inputs never share an output.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The step's identity: its module path and name (for a node of a state graph, also
    /// the graph and the node, since its output includes where the graph goes next).
    pub step: String,
    /// The step's version (`#[step(version = N)]`): raising it retires the outputs cached
    /// by the earlier versions.
    pub version: u32,
    /// The step's inputs, as JSON text with object keys sorted.
    pub input: String,
}

impl CacheKey {
    /// A 64-bit FNV-1a hash of the key, for stores that index entries by a number.
    pub fn hash64(&self) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325_u64;
        let parts = [
            self.step.as_bytes(),
            &self.version.to_le_bytes(),
            self.input.as_bytes(),
        ];
        for part in parts {
            for &byte in (part.len() as u64).to_le_bytes().iter().chain(part) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        hash
    }
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
    /// The run is not waiting for outside input, so there is nothing to answer.
    NotWaiting {
        /// The run.
        run: RunId,
        /// Its status.
        status: RunStatus,
    },
    /// The run waits for outside input, but at another pause node.
    WrongInterrupt {
        /// The run.
        run: RunId,
        /// The pause node it waits at.
        waiting: String,
        /// The node the answer was for.
        got: String,
    },
    /// A worker's lease on a task has expired and the task is someone else's (or gone):
    /// what the worker did with it is not recorded.
    LeaseLost {
        /// The run.
        run: RunId,
        /// The task's node.
        node: String,
    },
    /// A statement a step asked to run with its checkpoint failed: nothing of the node
    /// was stored.
    Statement {
        /// The run.
        run: RunId,
        /// The node whose step asked for it.
        node: String,
        /// The statement's SQL.
        sql: String,
        /// Why it failed.
        error: String,
    },
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
            Self::NotWaiting { run, status } => {
                write!(f, "run {run} is not waiting for input: it is {status}")
            }
            Self::WrongInterrupt { run, waiting, got } => write!(
                f,
                "run {run} waits for input at node `{waiting}`, not at `{got}`"
            ),
            Self::LeaseLost { run, node } => write!(
                f,
                "the lease on node `{node}` of run {run} was lost: another worker holds it"
            ),
            Self::Statement {
                run,
                node,
                sql,
                error,
            } => write!(
                f,
                "the statement of node `{node}` of run {run} failed, so the node's checkpoint was not stored: {error} (in `{sql}`)"
            ),
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

/// Checks that a run in `status` whose pending interrupt is at `waiting` (if it has one)
/// can take an answer to the pause node `node` (see [`Store::answer`]).
fn check_answer(
    run: RunId,
    status: RunStatus,
    waiting: Option<&str>,
    node: &str,
) -> Result<(), StoreError> {
    match waiting {
        Some(waiting) if status == RunStatus::Waiting && waiting == node => Ok(()),
        Some(waiting) if status == RunStatus::Waiting => Err(StoreError::WrongInterrupt {
            run,
            waiting: waiting.to_owned(),
            got: node.to_owned(),
        }),
        _ => Err(StoreError::NotWaiting { run, status }),
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
///
/// A run takes writes while it is [`RunStatus::Running`] or [`RunStatus::Waiting`] (nodes
/// of other branches may complete while one waits); once it has ended, every write is
/// refused, with [`StoreError::Ended`] ([`StoreError::NotWaiting`] from
/// [`Store::answer`]).
pub trait Store: Send + Sync + 'static {
    /// Records a new run (its events start at sequence 0).
    fn create_run(&self, run: RunRecord) -> StoreFuture<'_, ()>;

    /// Appends events to a run's log; their sequence numbers must continue it without a
    /// gap.
    fn append_events(&self, run: RunId, events: Vec<Event>) -> StoreFuture<'_, ()>;

    /// Records completed nodes: their checkpoints, in order (after the run's earlier
    /// ones), and the events that report them (their "completed" events, and any before
    /// them not yet stored), together. A node completes once: if one of `checkpoints` has
    /// a checkpoint already, or is in the batch twice, the error is
    /// [`StoreError::AlreadyCompleted`]. An empty batch just appends the events.
    fn checkpoint(
        &self,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()>;

    /// Records a state graph's progress: replaces the run's state checkpoint (only the
    /// latest is kept), appends its change to the run's history if it carries one, and
    /// appends the events that report it, together.
    fn save_state(
        &self,
        run: RunId,
        state: StateCheckpoint,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()>;

    /// A run's latest state checkpoint; `None` if it has none (not a state graph, or no
    /// node completed yet).
    fn state(&self, run: RunId) -> StoreFuture<'_, Option<StateCheckpoint>>;

    /// A state graph's history, in step order: one change per completed node whose state
    /// checkpoint carried one (runs that keep their history); empty otherwise.
    fn history(&self, run: RunId) -> StoreFuture<'_, Vec<StateChange>>;

    /// Pauses a run until outside input arrives: appends the events, stores the interrupt
    /// (replacing any pending one) and sets the status to [`RunStatus::Waiting`], together.
    fn suspend(&self, run: RunId, interrupt: Interrupt, events: Vec<Event>) -> StoreFuture<'_, ()>;

    /// The interrupt a run waits on; `None` when it is not waiting.
    fn interrupt(&self, run: RunId) -> StoreFuture<'_, Option<Interrupt>>;

    /// Answers a run's interrupt at the pause node `node`: deletes the interrupt, sets the
    /// status back to [`RunStatus::Running`], records the progress the answer makes and
    /// appends the events, together.
    ///
    /// The run must wait at `node`: otherwise the error is [`StoreError::NotWaiting`] (no
    /// interrupt pending) or [`StoreError::WrongInterrupt`] (one pending at another node).
    fn answer(
        &self,
        run: RunId,
        node: String,
        progress: Progress,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()>;

    /// Sets a run's status (with its output or error when it ends), and appends its last
    /// events, together. A run that ends while waiting drops its interrupt. A state graph's
    /// output is its final state: a store keeps it once, and [`Store::state`] of a
    /// succeeded run returns its output as the state.
    fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        output: Option<serde_json::Value>,
        error: Option<String>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()>;

    /// Records a run's last completed nodes and how it ended: [`Store::checkpoint`] of
    /// `checkpoints` with the first `checkpointed` of `events`, then
    /// [`Store::finish_run`] with the rest.
    ///
    /// The default makes the two calls one after the other; a crash between them leaves
    /// the run as after any checkpoint (running, to resume). A store that can make them
    /// one transaction overrides this, and a run then commits once less: the SQLite and
    /// PostgreSQL stores do.
    #[allow(clippy::too_many_arguments)] // the two writes' arguments
    fn finish_run_after(
        &self,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
        mut events: Vec<Event>,
        checkpointed: usize,
        status: RunStatus,
        output: Option<serde_json::Value>,
        error: Option<String>,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let rest = events.split_off(checkpointed.min(events.len()));
            self.checkpoint(run, checkpoints, events).await?;
            self.finish_run(run, status, output, error, rest).await
        })
    }

    /// A run's record.
    fn run(&self, run: RunId) -> StoreFuture<'_, RunRecord>;

    /// The runs, newest first, at most `limit`.
    fn runs(&self, limit: usize) -> StoreFuture<'_, Vec<RunRecord>>;

    /// A run's checkpoints, in the order the nodes completed.
    fn checkpoints(&self, run: RunId) -> StoreFuture<'_, Vec<Checkpoint>>;

    /// A run's events from sequence number `from` on.
    fn events(&self, run: RunId, from: u64) -> StoreFuture<'_, Vec<Event>>;

    /// How many runs are in `status` (for metrics: how many wait for input, say).
    ///
    /// The provided method lists every run; a store that can count without reading them
    /// should.
    fn count_runs(&self, status: RunStatus) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let runs = self.runs(usize::MAX).await?;
            Ok(runs.iter().filter(|run| run.status == status).count() as u64)
        })
    }

    /// The output cached under `key`, if there is one that has not expired at `now`.
    fn cached(&self, key: CacheKey, now: Timestamp) -> StoreFuture<'_, Option<serde_json::Value>>;

    /// Caches `output` under `key` until `expires_at`, replacing what was cached under it;
    /// drops the entries that have expired by `now`.
    fn cache(
        &self,
        key: CacheKey,
        output: serde_json::Value,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreFuture<'_, ()>;

    /// The store's work queue, if it has one: a store that worker processes share
    /// (`PostgresStore`) queues the ready nodes of submitted runs for them. `None` (the
    /// provided method) for a store that only the process driving a run writes to.
    fn queue(&self) -> Option<&dyn TaskQueue> {
        None
    }

    /// Whether it runs the statements of transactional steps ([`Checkpoint::writes`]) in
    /// its checkpoints' transactions: stores on a SQL database do. `false` (the provided
    /// method): [`crate::transaction`] is then `None` in its runs' steps.
    fn runs_statements(&self) -> bool {
        false
    }
}
