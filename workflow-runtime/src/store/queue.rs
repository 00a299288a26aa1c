//! The work queue of a store that several worker processes share (see
//! [`crate::worker::Worker`]): a dataflow run's ready nodes are tasks that workers claim
//! under leases, and a node's result commits only under the lease it was claimed with.

use std::time::Duration;

use super::{Checkpoint, Interrupt, Progress, RunRecord, RunStatus, StateCheckpoint, StoreFuture};
use crate::events::Event;
use crate::run::RunId;

/// The task that computes a run's output once every node has completed or was skipped:
/// its node name. No node is named so (`workflow!` node names are Rust identifiers).
pub const FINISH: &str = "";

/// A node that is ready to run, as a task in the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// The node ([`FINISH`] for the task that ends the run).
    pub node: String,
    /// The node's step, which per-step concurrency limits count.
    pub step: String,
}

/// A node that may have become ready, and what it waits for: it is ready when every one
/// of `needs` has completed, and every one of `reads_if_present` has completed or was
/// skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The node, as a task.
    pub task: Task,
    /// Nodes whose outputs it needs.
    pub needs: Vec<String>,
    /// Nodes whose outputs it reads if they exist (with `.ok()`).
    pub reads_if_present: Vec<String>,
}

/// A task a worker holds: the run, the node, and the lease it was claimed under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The run.
    pub run: RunId,
    /// The node ([`FINISH`] for the task that ends the run).
    pub node: String,
    /// The run's workflow.
    pub workflow: String,
    /// The lease: a number no other claim of any task ever gets. Whatever the worker
    /// commits for this task commits only while the task is still held under it.
    pub lease: u64,
    /// How many times the task was claimed, this claim included: more than 1 when an
    /// earlier holder lost its lease (it died, or stalled).
    pub claims: u32,
    /// How long the task waited, from becoming ready to this claim (by the database's
    /// clock; for a task claimed again, from when it first became ready).
    pub waited: Duration,
}

/// What a worker did with a claimed task: the store records it in one transaction, and
/// only if the task is still held under the claim's lease.
#[derive(Debug, Default)]
pub struct TaskResult {
    /// The node's checkpoint, when it completed.
    pub checkpoint: Option<Checkpoint>,
    /// For a state graph's node: the state after it (replacing the stored one).
    pub state: Option<StateCheckpoint>,
    /// Nodes skipped by a failure policy: the node, and those downstream that needed it.
    pub skipped: Vec<String>,
    /// The pause the node asks an answer for.
    pub pause: Option<Interrupt>,
    /// Nodes that may have become ready; the store queues those that are.
    pub candidates: Vec<Candidate>,
    /// How the run ended, when this task ended it: its status, output and error. The
    /// run's other tasks are dropped.
    pub end: Option<(RunStatus, Option<serde_json::Value>, Option<String>)>,
    /// The task's events, in order. The store numbers them on from the run's stored log
    /// (their `seq` is ignored).
    pub events: Vec<Event>,
}

/// What a task runs from ([`TaskQueue::inputs`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskInputs {
    /// The run's record.
    pub record: RunRecord,
    /// The checkpoints asked for.
    pub checkpoints: Vec<Checkpoint>,
    /// Whether the run keeps its history.
    pub history: bool,
}

/// A concurrency limit across every worker sharing a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Limit {
    /// At most this many tasks of the step in flight at once.
    Step(String, u32),
    /// At most this many tasks of the workflow's runs in flight at once.
    Workflow(String, u32),
}

/// A store that queues the ready nodes of runs for worker processes (PostgreSQL). Every
/// method is one transaction.
pub trait TaskQueue: Send + Sync {
    /// Records a new run with its first events and its first ready nodes; `history` says
    /// whether the run keeps its history (a state graph's changes, see
    /// [`crate::Durable::keep_history`]).
    fn submit(
        &self,
        run: RunRecord,
        ready: Vec<Task>,
        events: Vec<Event>,
        history: bool,
    ) -> StoreFuture<'_, ()>;

    /// Claims up to `max` ready tasks of runs of `workflows` (name and structural hash
    /// each), oldest first, for `lease` (renewed by [`TaskQueue::renew`]): tasks that
    /// nobody holds, or whose lease has expired. `claimer` is the caller's name and the
    /// leases of the tasks it runs: it never takes one of those again, even once its lease
    /// has lapsed. Concurrency limits are respected.
    fn claim<'a>(
        &'a self,
        workflows: &'a [(String, String)],
        claimer: (&'a str, &'a [u64]),
        max: usize,
        lease: Duration,
    ) -> StoreFuture<'a, Vec<Claim>>;

    /// Extends the leases held by these claims by `lease` from now; returns the leases
    /// still held (a lease that was lost is not renewed).
    fn renew<'a>(&'a self, leases: &'a [u64], lease: Duration) -> StoreFuture<'a, Vec<u64>>;

    /// What a task runs from, read together: the run's record, and the checkpoints of
    /// `nodes` (of every node when `None`).
    fn inputs(&self, run: RunId, nodes: Option<Vec<String>>) -> StoreFuture<'_, TaskInputs>;

    /// Records a task's result: fails with [`super::StoreError::LeaseLost`] (and writes
    /// nothing) unless the task is still held under `claim.lease`.
    fn complete<'a>(&'a self, claim: &'a Claim, result: TaskResult) -> StoreFuture<'a, ()>;

    /// Sets the cluster's concurrency limits (replacing those it had).
    fn set_limits(&self, limits: Vec<Limit>) -> StoreFuture<'_, ()>;

    /// How many tasks are queued or in flight.
    fn pending(&self) -> StoreFuture<'_, u64>;

    /// How many tasks of `run` are queued or in flight: more than none while workers run
    /// it.
    fn queued(&self, run: RunId) -> StoreFuture<'_, u64>;

    /// Whether `run` was submitted to the workers ([`TaskQueue::submit`]).
    fn on_workers(&self, run: RunId) -> StoreFuture<'_, bool>;

    /// Records an answer to the pause of a run on the workers, as [`super::Store::answer`]
    /// does, and in the same transaction queues the nodes in `next` whose inputs now all
    /// exist (or, when none is left to run, the task that ends the run).
    fn answer_queued(
        &self,
        run: RunId,
        answer: (String, Progress),
        events: Vec<Event>,
        next: Vec<Candidate>,
    ) -> StoreFuture<'_, ()>;

    /// A signal that tasks were queued, for an idle worker to look at once instead of at
    /// its next poll (PostgreSQL: `LISTEN/NOTIFY` on a connection of its own, for as long
    /// as the signal is kept). It may be late or missed; workers poll all the same, so
    /// correctness never depends on it. `None` (the provided method) when the store has
    /// none.
    fn wakeups(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}

impl Limit {
    /// What the limit counts, as stored: `step` or `workflow`, and the name.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn parts(&self) -> (&'static str, &str, u32) {
        match self {
            Self::Step(name, max) => ("step", name, *max),
            Self::Workflow(name, max) => ("workflow", name, *max),
        }
    }
}
