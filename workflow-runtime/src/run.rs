//! The scheduler: runs a compiled workflow from its static [`Graph`], starting each node the
//! moment its inputs exist, and reports what happens as [`Event`](crate::Event)s.
//!
//! Guarantees: a node starts only after every node it depends on has succeeded; events of a
//! run have gapless sequence numbers and end with exactly one terminal event; when a run
//! fails or is cancelled, every step still running has been dropped before `run` returns.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::Either;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::cache::{self, NodeCache};
use crate::events::{Event, EventKind, EventLog, EventStream};
use crate::graph::{Graph, Next, NodeDef, NodeId, StateGraphDef, Target};
use crate::policy::{OnFailure, Policy};
use crate::private::{Compiled, CompiledStateGraph, Nodes, StateFuture, Typed};
use crate::step::{ErrorKind, StepError};
use crate::store::{
    Checkpoint, Interrupt, RunStatus, StateCheckpoint, Statement, Store, StoreError, StoreFuture,
    Timestamp,
};

mod lanes;

/// How many node executions a run of a state graph may make before it fails with
/// [`RunError::StepLimit`], unless [`RunOptions::max_steps`] says otherwise.
pub const DEFAULT_MAX_STEPS: u32 = 1_000;

/// The unique id of a run (a `UUIDv7`, so ids sort by start time).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct RunId(uuid::Uuid);

impl RunId {
    /// A new, unique run id: a `UUIDv7` whose 48-bit timestamp is the current Unix time
    /// in milliseconds, whose next 12 bits count the ids made in this process within that
    /// millisecond (so ids made here sort in the order they were made), and whose last 62
    /// bits are random.
    pub fn new() -> Self {
        /// The last timestamp and count handed out: `millis << 12 | count`.
        static LAST: AtomicU64 = AtomicU64::new(0);
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX >> 16)
            })
            & ((1 << 48) - 1);
        let mut last = LAST.load(Ordering::Relaxed);
        let stamp = loop {
            // More than 4,096 ids in one millisecond borrow from the next one.
            let next = (millis << 12).max(last + 1);
            match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break next,
                Err(seen) => last = seen,
            }
        };
        // Random bits from a thread-local generator: the operating system's random source
        // costs a system call per id, several times what the rest of a small run costs.
        let high = (stamp >> 12) << 16 | 0x7000 | (stamp & 0xFFF);
        let low = fastrand::u64(..) & (u64::MAX >> 2) | 1 << 63;
        Self(uuid::Uuid::from_u64_pair(high, low))
    }

    /// The id as a UUID (for a store that keeps it as one).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn uuid(self) -> uuid::Uuid {
        self.0
    }

    /// The id a store kept as a UUID.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn from_uuid(uuid: uuid::Uuid) -> Self {
        Self(uuid)
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for RunId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// How the steps of a run are driven.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Parallelism {
    /// Steps run in tokio tasks: independent steps run on all worker threads at once.
    /// The right choice for CPU work and the default. A step that ends starts what it made
    /// ready itself: it goes on with the first such node in its own task, and the others
    /// wait in the run's queue of ready nodes, which the run's tasks take from. A task is
    /// spawned while the run keeps fewer tasks busy than the runtime has workers (plus
    /// one) if the work waiting is worth it (10 µs of steps by their last times, kept per
    /// node in [`Graph::costs`](crate::Graph::costs), or a step never run), and whenever a
    /// step waits (I/O, an LLM call) with ready nodes in the queue, which its task hands to
    /// a new one: steps that compute run in about as many tasks as there are workers, with
    /// no spawn per step, a few light steps in one, and steps that wait all wait at once,
    /// each in a task. A task that has run steps for a millisecond without waiting yields
    /// its worker to tokio's other tasks. (A durable run, or one with
    /// [`RunOptions::max_concurrency`], starts every step from the run's task, which stores
    /// checkpoints and counts steps in flight; a step that is the only one ready there runs
    /// in the run's task.)
    #[default]
    Tasks,
    /// Every step's future is polled from the run's own task: steps still overlap while
    /// they wait (I/O, LLM calls), never on two threads at once. For a run that must stay
    /// on one thread: it costs more per step than [`Parallelism::Tasks`], which runs steps
    /// that compute one after another in a few tasks without polling a set of futures.
    SingleTask,
}

/// Options for one run: concurrency limit and how steps are driven.
///
/// # Examples
///
/// ```
/// use workflow::{Parallelism, RunOptions};
///
/// let options = RunOptions::new()
///     .max_concurrency(4)
///     .parallelism(Parallelism::SingleTask);
/// assert_eq!(options.concurrency_limit().map(|n| n.get()), Some(4));
/// ```
#[derive(Clone, Debug)]
pub struct RunOptions {
    max_concurrency: Option<NonZeroUsize>,
    parallelism: Parallelism,
    max_steps: u32,
    jitter_seed: Option<u64>,
    deadline: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            max_concurrency: None,
            parallelism: Parallelism::default(),
            max_steps: DEFAULT_MAX_STEPS,
            jitter_seed: None,
            deadline: None,
        }
    }
}

impl RunOptions {
    /// The defaults: no concurrency limit, steps in tokio tasks ([`Parallelism::Tasks`]),
    /// at most [`DEFAULT_MAX_STEPS`] node executions in a state graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// A run of a state graph fails with [`RunError::StepLimit`] instead of executing more
    /// than `limit` nodes: a guard against a loop that runs longer than intended. Every loop
    /// of a state graph has its own bound already; this one counts every node. (A dataflow
    /// run executes each node once and ignores it.)
    ///
    /// # Examples
    ///
    /// ```
    /// use workflow::RunOptions;
    ///
    /// assert_eq!(RunOptions::new().step_limit(), workflow::DEFAULT_MAX_STEPS);
    /// assert_eq!(RunOptions::new().max_steps(50).step_limit(), 50);
    /// ```
    #[must_use]
    pub fn max_steps(mut self, limit: u32) -> Self {
        self.max_steps = limit;
        self
    }

    /// The most node executions a run of a state graph may make.
    pub fn step_limit(&self) -> u32 {
        self.max_steps
    }

    /// Makes the run's retry delays reproducible: with a seed, the jittered delay before
    /// attempt `n` of a node depends only on the seed, the node and `n` (and, in a state
    /// graph, how many steps ran before), never on timing. Without one, each run draws a
    /// random seed. For tests on a paused clock.
    ///
    /// # Examples
    ///
    /// ```
    /// use workflow::RunOptions;
    ///
    /// let options = RunOptions::new().jitter_seed(42);
    /// assert_eq!(options.seed(), Some(42));
    /// ```
    #[must_use]
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// The run fails with [`RunError::DeadlineExceeded`] if it has not finished `deadline`
    /// after it started: the steps in flight are dropped and no retry fires afterwards.
    /// (Per attempt, use a step's `timeout`.)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use workflow::RunOptions;
    ///
    /// let options = RunOptions::new().deadline(Duration::from_secs(600));
    /// assert_eq!(options.run_deadline(), Some(Duration::from_secs(600)));
    /// ```
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The run's deadline, if any.
    pub fn run_deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The jitter seed, if one was set.
    pub fn seed(&self) -> Option<u64> {
        self.jitter_seed
    }

    /// The seed of one run: the one set, or a fresh random one.
    pub(crate) fn run_seed(&self) -> u64 {
        self.jitter_seed.unwrap_or_else(|| fastrand::u64(..))
    }

    /// At most `limit` steps of the run execute at once; further ready steps wait their
    /// turn in the order they became ready. A limit of 0 is taken as 1.
    #[must_use]
    pub fn max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = Some(NonZeroUsize::new(limit).unwrap_or(NonZeroUsize::MIN));
        self
    }

    /// How the steps are driven; see [`Parallelism`].
    #[must_use]
    pub fn parallelism(mut self, parallelism: Parallelism) -> Self {
        self.parallelism = parallelism;
        self
    }

    /// The concurrency limit, if any.
    pub fn concurrency_limit(&self) -> Option<NonZeroUsize> {
        self.max_concurrency
    }
}

/// Why a run did not produce its output.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    /// A node failed for good; the steps still running were cancelled.
    Step {
        /// The node that failed.
        node: &'static str,
        /// The step it calls.
        step: &'static str,
        /// The step's error.
        source: StepError,
    },
    /// The run was cancelled from its handle.
    Cancelled,
    /// The run did not finish within its [deadline](RunOptions::deadline); the steps in
    /// flight were dropped.
    DeadlineExceeded {
        /// The deadline.
        deadline: Duration,
    },
    /// A state graph executed as many nodes as [`RunOptions::max_steps`] allows and was
    /// about to run another.
    StepLimit {
        /// The limit.
        limit: u32,
        /// The node that would have run next.
        node: &'static str,
    },
    /// The store of a durable run failed; the run stays stored as it was (running, so it
    /// can resume once the store works again).
    Store(StoreError),
    /// A durable run reached a pause node and waits for outside input: not a failure. The
    /// run is stored as waiting with the request; answer it to go on.
    Waiting {
        /// The pause node.
        node: &'static str,
        /// What the run asks for, as JSON.
        request: serde_json::Value,
    },
    /// A stored run cannot be taken up (resumed or answered) by this program.
    NotResumable {
        /// The run.
        run: RunId,
        /// Why not.
        reason: String,
    },
    /// The workflow changed since the run started: its graph's structural hash differs
    /// from the one stored with the run, so resuming would mix two versions.
    GraphChanged {
        /// The run.
        run: RunId,
        /// The workflow.
        workflow: String,
        /// The hash stored with the run.
        stored: String,
        /// The hash of the workflow in this program.
        current: String,
    },
    /// A value given to or stored for a durable run does not have the type it must have
    /// (an input, a checkpoint, an answer to a pause); nothing was changed.
    Decode {
        /// What the value is.
        what: String,
        /// Why it does not decode.
        error: String,
    },
    /// A run followed from its store ([`crate::Durable::follow`]) failed where it ran.
    Failed {
        /// The run.
        run: RunId,
        /// Its error, as stored.
        error: String,
    },
    /// What was asked cannot be done with this store (submitting runs to workers, or
    /// running workers, on a store without a work queue).
    Unsupported(String),
    /// The runtime broke one of its own invariants (a bug; please report it).
    Internal(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Step { node, step, source } if node == step => {
                write!(f, "step `{step}` failed: {source}")
            }
            Self::Step { node, step, source } => {
                write!(f, "node `{node}` (step `{step}`) failed: {source}")
            }
            Self::Cancelled => f.write_str("the run was cancelled"),
            Self::DeadlineExceeded { deadline } => {
                write!(
                    f,
                    "the run did not finish within its deadline of {deadline:?}"
                )
            }
            Self::StepLimit { limit, node } => write!(
                f,
                "the run reached its limit of {limit} steps before `END` (next was `{node}`): bound the loop that keeps it going, or raise the limit with `RunOptions::max_steps`"
            ),
            Self::Store(error) => write!(f, "{error}"),
            Self::Waiting { node, .. } => write!(
                f,
                "the run waits for an answer to its pause `{node}`: a durable run stores the request and goes on with `Durable::answer`"
            ),
            Self::NotResumable { run, reason } => write!(f, "run {run} cannot resume: {reason}"),
            Self::GraphChanged {
                run,
                workflow,
                stored,
                current,
            } => write!(
                f,
                "run {run} was started by a different version of `{workflow}` (graph hash {stored}, this program has {current}): it cannot resume under the changed graph; finish it with the program that started it, or start a new run"
            ),
            Self::Decode { what, error } => write!(f, "{what} has the wrong type: {error}"),
            Self::Failed { run, error } => write!(f, "run {run} failed: {error}"),
            Self::Unsupported(message) => f.write_str(message),
            Self::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Step { source, .. } => Some(source.as_dyn_error()),
            Self::Store(error) => Some(error),
            _ => None,
        }
    }
}

impl From<StoreError> for RunError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// A running workflow: read its events, cancel it, or await its output.
///
/// Dropping the handle detaches the run (it goes on, like a dropped `JoinHandle`); call
/// [`RunHandle::cancel`] to stop it.
///
/// # Examples
///
/// ```
/// use workflow::prelude::*;
///
/// #[step]
/// async fn slow(n: &u64) -> u64 {
///     tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
///     *n
/// }
///
/// workflow! {
///     /// Takes an hour.
///     pub Slow(n: u64) -> u64 {
///         slow(n)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = Slow::new().start(1);
/// handle.cancel();
/// assert!(matches!(handle.await, Err(RunError::Cancelled)));
/// # }
/// ```
pub struct RunHandle<O> {
    id: RunId,
    log: Arc<EventLog>,
    cancel: Canceller,
    join: tokio::task::JoinHandle<Result<O, RunError>>,
}

impl<O> RunHandle<O> {
    /// The run's id.
    pub fn id(&self) -> RunId {
        self.id
    }

    /// A subscription to the run's events, starting from its first event; each call gives
    /// an independent subscription.
    pub fn events(&self) -> EventStream {
        EventStream::new(Arc::clone(&self.log))
    }

    /// Cancels the run: steps in flight are dropped, no new step starts, and the run ends
    /// with [`RunError::Cancelled`] (unless it had already finished).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A cloneable handle that cancels this run from anywhere.
    pub fn canceller(&self) -> Canceller {
        self.cancel.clone()
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Waits for the run to end and returns its output.
    pub async fn wait(self) -> Result<O, RunError> {
        match self.join.await {
            Ok(result) => result,
            Err(error) if error.is_panic() => Err(RunError::Internal(format!(
                "the scheduler panicked: {}",
                panic_message(&*error.into_panic())
            ))),
            Err(_) => Err(RunError::Cancelled),
        }
    }
}

impl<O: Send + 'static> IntoFuture for RunHandle<O> {
    type Output = Result<O, RunError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<O, RunError>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

impl<O> fmt::Debug for RunHandle<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Cancels a run; cloneable, so any task can hold one. See [`RunHandle::canceller`].
#[derive(Clone, Default)]
pub struct Canceller(Arc<CancelSignal>);

#[derive(Default)]
struct CancelSignal {
    cancelled: AtomicBool,
    notify: Notify,
}

impl Canceller {
    /// Cancels the run.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        // `notify_one` keeps a permit when the scheduler is not waiting right now, so a
        // cancellation is never missed.
        self.0.notify.notify_one();
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    pub(crate) async fn cancelled(&self) {
        while !self.is_cancelled() {
            self.0.notify.notified().await;
        }
    }
}

impl fmt::Debug for Canceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Canceller")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

tokio::task_local! {
    /// The node whose attempt is being polled, so that a workflow run inside it nests its
    /// events in the node's run.
    static CURRENT_STEP: StepScope;
}

#[derive(Clone)]
struct StepScope {
    log: Arc<EventLog>,
    node: &'static str,
    /// Where a transactional step's statements go, in a durable run on a store that runs
    /// them ([`transaction`]).
    writes: Option<Writes>,
}

/// The statements a node's step asked to run with its checkpoint: those of its last
/// attempt (each attempt starts with none).
pub(crate) type Writes = Arc<Mutex<Vec<Statement>>>;

/// The statements of `writes`, taken.
pub(crate) fn take_writes(writes: Option<&Writes>) -> Vec<Statement> {
    writes.map_or_else(Vec::new, |writes| {
        std::mem::take(&mut *writes.lock().unwrap_or_else(PoisonError::into_inner))
    })
}

/// The database transaction of the step being executed, for the step's own writes: the
/// statements it runs through it commit in the transaction that stores the step's
/// checkpoint, so they happen exactly when the step's completion is recorded (once, even
/// if the step's process dies and the step runs again: a run that crashed before its
/// checkpoint has neither). `None` outside a step, in a run that is not durable, or on a
/// store without a database (the in-memory one): SQLite and PostgreSQL run them.
///
/// The statements are sent when the step has succeeded, with its checkpoint (a step
/// cannot read what it writes: no transaction stays open while a step waits for an LLM).
/// Those of a failed attempt are dropped with it. A statement that fails fails the
/// checkpoint: nothing of the node is stored, and the run stops as when its store fails
/// ([`RunError::Store`] with [`StoreError::Statement`]), resumable once the cause is
/// fixed.
///
/// # Examples
///
/// ```
/// use workflow::prelude::*;
///
/// #[step]
/// fn charge(amount: &u32) -> Result<String, StepError> {
///     let tx = workflow::transaction().ok_or_else(|| StepError::msg("not durable"))?;
///     tx.execute(
///         "INSERT INTO payments (amount) VALUES ($1)",
///         [serde_json::json!(amount)],
///     );
///     Ok(format!("charged {amount}"))
/// }
///
/// workflow! {
///     /// Charges once.
///     pub Pay(amount: u32) -> String {
///         charge(amount)
///     }
/// }
/// # fn main() {}
/// ```
pub fn transaction() -> Option<StepTransaction> {
    CURRENT_STEP
        .try_with(|scope| scope.writes.clone())
        .ok()
        .flatten()
        .map(StepTransaction)
}

/// A step's share of the transaction that stores its checkpoint (see [`transaction`]).
#[derive(Clone)]
pub struct StepTransaction(Writes);

impl StepTransaction {
    /// Runs `sql` with its parameters (`$1`, `$2`, ... in the SQL; JSON values here,
    /// bound as the parameters' types ask) in the checkpoint's transaction.
    pub fn execute(
        &self,
        sql: impl Into<String>,
        params: impl IntoIterator<Item = serde_json::Value>,
    ) {
        let statement = Statement {
            sql: sql.into(),
            params: params.into_iter().collect(),
        };
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(statement);
    }
}

impl fmt::Debug for StepTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("StepTransaction")
            .field("statements", &count)
            .finish()
    }
}

/// The log of a new run: nested in the current step's run when called from inside a step.
fn run_log(id: RunId) -> Arc<EventLog> {
    let log = CURRENT_STEP
        .try_with(|scope| EventLog::nested(Arc::clone(&scope.log), scope.node.into()))
        .unwrap_or_else(|_| EventLog::new(id.to_string().into()));
    Arc::new(log)
}

/// The idempotency key of the step being executed: `<run id>/<node>` (for a step of a
/// subworkflow, `<run id>/<node>/<inner node>`), or `None` outside a step.
///
/// The key is the same on every attempt of the node and after the run resumes from its
/// store, so a step can hand it to an outside system (a payment API, an email service)
/// that deduplicates requests: a node that runs again after a crash (at-least-once) then
/// has its effect once.
///
/// # Examples
///
/// ```
/// use workflow::prelude::*;
///
/// #[step]
/// fn charge(amount: &u32) -> String {
///     let key = workflow::idempotency_key().expect("inside a step");
///     format!("charge {amount} with key {key}")
/// }
///
/// workflow! {
///     /// Charges once.
///     pub Pay(amount: u32) -> String {
///         charge(amount)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = Pay::new().start(5);
/// let id = handle.id();
/// assert_eq!(handle.await.unwrap(), format!("charge 5 with key {id}/charge"));
/// assert_eq!(workflow::idempotency_key(), None);
/// # }
/// ```
pub fn idempotency_key() -> Option<String> {
    CURRENT_STEP
        .try_with(|scope| format!("{}/{}", scope.log.key(), scope.node))
        .ok()
}

/// Runs a workflow to completion in the calling task.
pub(crate) async fn run<W: Compiled>(
    ctx: Arc<W::Context>,
    options: RunOptions,
    input: W::Input,
) -> Result<W::Output, RunError> {
    let id = RunId::new();
    drive::<W>(
        id,
        Typed::plain(Arc::new(W::new_run(ctx, input))),
        options,
        run_log(id),
        Canceller::default(),
        None,
    )
    .await
}

/// Runs a state graph to completion in the calling task.
pub(crate) async fn run_state<W: CompiledStateGraph>(
    ctx: Arc<W::Context>,
    options: RunOptions,
    state: W::State,
) -> Result<W::State, RunError> {
    let id = RunId::new();
    drive_state::<W>(
        id,
        ctx,
        Walk::start(state),
        options,
        run_log(id),
        Canceller::default(),
        None,
    )
    .await
}

/// Starts a workflow in a new tokio task.
///
/// # Panics
///
/// Outside a tokio runtime.
pub(crate) fn start<W: Compiled>(
    ctx: &Arc<W::Context>,
    options: &RunOptions,
    input: W::Input,
) -> RunHandle<W::Output> {
    let nodes = Typed::<W>::plain(Arc::new(W::new_run(Arc::clone(ctx), input)));
    let options = options.clone();
    spawn(|id, log, cancel| drive::<W>(id, nodes, options, log, cancel, None))
}

/// Starts a state graph in a new tokio task.
///
/// # Panics
///
/// Outside a tokio runtime.
pub(crate) fn start_state<W: CompiledStateGraph>(
    ctx: &Arc<W::Context>,
    options: &RunOptions,
    state: W::State,
) -> RunHandle<W::State> {
    let ctx = Arc::clone(ctx);
    let options = options.clone();
    spawn(|id, log, cancel| {
        drive_state::<W>(id, ctx, Walk::start(state), options, log, cancel, None)
    })
}

/// Spawns a run, detached from any step it is started from.
fn spawn<O, F>(drive: impl FnOnce(RunId, Arc<EventLog>, Canceller) -> F) -> RunHandle<O>
where
    F: Future<Output = Result<O, RunError>> + Send + 'static,
    O: Send + 'static,
{
    let id = RunId::new();
    let log = Arc::new(EventLog::new(id.to_string().into()));
    spawn_with(id, log, drive)
}

/// Spawns a run whose id and log exist already.
pub(crate) fn spawn_with<O, F>(
    id: RunId,
    log: Arc<EventLog>,
    drive: impl FnOnce(RunId, Arc<EventLog>, Canceller) -> F,
) -> RunHandle<O>
where
    F: Future<Output = Result<O, RunError>> + Send + 'static,
    O: Send + 'static,
{
    let cancel = Canceller::default();
    let join = tokio::spawn(drive(id, Arc::clone(&log), cancel.clone()));
    RunHandle {
        id,
        log,
        cancel,
        join,
    }
}

/// A run's deadline, as a future that never completes when there is none.
struct Deadline {
    deadline: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl Deadline {
    fn new(deadline: Option<Duration>) -> Self {
        Self {
            deadline: deadline.map(|after| (after, Box::pin(tokio::time::sleep(after)))),
        }
    }

    /// Completes when the deadline passes.
    async fn expired(&mut self) -> RunError {
        match &mut self.deadline {
            Some((deadline, sleep)) => {
                sleep.as_mut().await;
                RunError::DeadlineExceeded {
                    deadline: *deadline,
                }
            }
            None => std::future::pending().await,
        }
    }
}

/// How a node of a dataflow run ended, as the scheduler learns it.
type Completion = (NodeId, Result<Finished, Failure>);

/// A node that ended without failing the run.
enum Finished {
    /// Its output exists (from the step or its fallback).
    Done(Done),
    /// It failed and its policy skips it.
    Skipped,
    /// It is a pause: it asked for outside input (the request, as JSON).
    Paused(serde_json::Value),
}

/// How a node's output came to exist.
struct Done {
    /// In a durable run, the `step_succeeded` event to emit (attempt number, duration):
    /// the scheduler emits it when it writes the node's checkpoint, so that the event and
    /// the checkpoint are stored together. `None` when the event was emitted already, or
    /// when no attempt succeeded (a fallback value).
    success: Option<(u32, Duration)>,
    /// The attempts made (the step's, and its fallback step's).
    attempts: u32,
    /// When the first attempt started, in a durable run.
    started: Option<Timestamp>,
    /// The statements its step asked to run with its checkpoint.
    writes: Vec<Statement>,
}

/// A node that failed the run: the step that failed (the node's, or its fallback step) and
/// its error.
type Failure = (&'static str, StepError);

/// Writes a durable run's progress to its store.
pub(crate) struct Recorder {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) id: RunId,
    /// The sequence number of the first event not yet stored.
    pub(crate) saved: u64,
    /// The checkpoints of the nodes that completed last, when nothing ran after them:
    /// stored with the run's end, in one write ([`Store::finish_run_after`]), with the
    /// events before this sequence number. Never set for a run that pauses (`settle`
    /// writes the checkpoints then), so the end that takes them is never a suspension.
    pub(crate) last: Option<(Vec<Checkpoint>, u64)>,
}

impl Recorder {
    /// Runs one store write with the events not yet stored; they count as stored once it
    /// succeeds.
    async fn write<'a>(
        &'a mut self,
        log: &EventLog,
        write: impl FnOnce(&'a dyn Store, RunId, Vec<Event>) -> StoreFuture<'a, ()>,
    ) -> Result<(), RunError> {
        let events = log.since(self.saved);
        let next = self.saved + events.len() as u64;
        write(&*self.store, self.id, events)
            .await
            .map_err(RunError::Store)?;
        self.saved = next;
        Ok(())
    }

    /// Stores how the run ended, with its last events. A run whose store failed is left
    /// as it is stored (running, so it can resume).
    pub(crate) async fn finish<O>(
        mut self,
        log: &EventLog,
        result: Result<O, RunError>,
        save_output: impl FnOnce(&O) -> Result<serde_json::Value, StepError>,
    ) -> Result<O, RunError> {
        let (status, output, error) = match &result {
            Ok(output) => match save_output(output) {
                Ok(json) => (RunStatus::Succeeded, Some(json), None),
                Err(error) => (RunStatus::Failed, None, Some(error.to_string())),
            },
            Err(RunError::Store(_)) => return result,
            Err(RunError::Waiting { node, request }) => {
                let interrupt = Interrupt {
                    node: (*node).to_owned(),
                    request: request.clone(),
                    created_at: Timestamp::now(),
                };
                self.write(log, |store, id, events| {
                    store.suspend(id, interrupt, events)
                })
                .await?;
                return result;
            }
            Err(RunError::Cancelled) => (RunStatus::Cancelled, None, None),
            Err(error) => (RunStatus::Failed, None, Some(error.to_string())),
        };
        match self.last.take() {
            Some((checkpoints, until)) => {
                let checkpointed = usize::try_from(until.saturating_sub(self.saved)).unwrap_or(0);
                self.write(log, |store, id, events| {
                    store.finish_run_after(
                        id,
                        checkpoints,
                        events,
                        checkpointed,
                        status,
                        output,
                        error,
                    )
                })
                .await?;
            }
            None => {
                self.write(log, |store, id, events| {
                    store.finish_run(id, status, output, error, events)
                })
                .await?;
            }
        }
        result
    }
}

/// What a dataflow run needs to be durable: its recorder, which nodes were restored from
/// their checkpoints, and its cache (its nodes move their outputs to and from JSON).
pub(crate) struct Durability<'a> {
    pub(crate) recorder: &'a mut Recorder,
    pub(crate) restored: Vec<bool>,
    /// Whether the run is taken up again from its store.
    pub(crate) resumed: bool,
    /// Where cached nodes look for and keep their outputs.
    pub(crate) cache: Arc<NodeCache>,
}

/// The steps in flight of one run.
enum InFlight<F> {
    /// A task per step; except that a step that is the only one ready while nothing else
    /// is in flight runs in `alone`, polled by the run's own task: nothing could run beside
    /// it, and nothing can become ready before it ends, so spawning it would only add a
    /// task and a hop between threads (a chain then costs what sequential `.await`s do).
    Tasks {
        set: JoinSet<Completion>,
        /// Reused for every step that runs alone: one allocation per run.
        alone: Pin<Box<Option<F>>>,
    },
    SingleTask(FuturesUnordered<F>),
}

impl<F: Future<Output = Completion> + Send + 'static> InFlight<F> {
    fn new(parallelism: Parallelism) -> Self {
        match parallelism {
            Parallelism::Tasks => Self::Tasks {
                set: JoinSet::new(),
                alone: Box::pin(None),
            },
            Parallelism::SingleTask => Self::SingleTask(FuturesUnordered::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Tasks { set, alone } => set.len() + usize::from(alone.is_some()),
            Self::SingleTask(set) => set.len(),
        }
    }

    /// Starts a step; `only` says that it is the only step ready, and none is in flight.
    fn push(&mut self, future: F, only: bool) {
        match self {
            Self::Tasks { alone, .. } if only => alone.set(Some(future)),
            Self::Tasks { set, .. } => {
                set.spawn(future);
            }
            Self::SingleTask(set) => set.push(future),
        }
    }

    /// The next step to end. Cancel-safe: a step that has not ended stays in flight.
    async fn next(&mut self) -> Option<Result<Completion, RunError>> {
        match self {
            Self::Tasks { set, alone } => {
                if let Some(step) = alone.as_mut().as_pin_mut() {
                    let completion = step.await;
                    alone.set(None);
                    return Some(Ok(completion));
                }
                set.join_next().await.map(|joined| {
                    joined.map_err(|error| {
                        RunError::Internal(format!("a step task ended abnormally: {error}"))
                    })
                })
            }
            Self::SingleTask(set) => set.next().await.map(Ok),
        }
    }

    /// Cancels every step in flight and waits until each one has been dropped.
    async fn shutdown(self) {
        match self {
            Self::Tasks { mut set, alone } => {
                drop(alone);
                set.shutdown().await;
            }
            Self::SingleTask(set) => drop(set),
        }
    }
}

/// Drives a dataflow run. The run's slots come in an `Arc` already: a large graph's slots
/// would otherwise make every future that holds this one that large.
pub(crate) async fn drive<W: Compiled>(
    id: RunId,
    nodes: Typed<W>,
    options: RunOptions,
    log: Arc<EventLog>,
    cancel: Canceller,
    durable: Option<Durability<'_>>,
) -> Result<W::Output, RunError> {
    let graph = W::graph();
    let span = run_span(graph, id);
    // The scheduler drops its reference before the output is taken.
    let run = Arc::clone(nodes.run());
    let ended = drive_graph(
        graph,
        Arc::new(nodes),
        options,
        Arc::clone(&log),
        cancel,
        durable,
    )
    .instrument(span.clone())
    .await;
    let result = ended.and_then(|paused| output::<W>(graph, run, paused, &log));
    span.record("outcome", outcome(&result));
    result
}

/// The scheduler of a dataflow run: runs its nodes until every one has ended, one fails
/// the run, or it is stopped. Returns the first node that paused, if one did; the run's
/// output is then what its nodes' slots hold ([`output`]).
///
/// Boxed, and not generic: the scheduler's code is made once, in this crate. (An `async
/// fn` that only generic code awaits would be compiled again in every crate that
/// instantiates that code, for every workflow.)
fn drive_graph<'a>(
    graph: &'static Graph,
    run: Arc<dyn Nodes>,
    options: RunOptions,
    log: Arc<EventLog>,
    cancel: Canceller,
    mut durable: Option<Durability<'a>>,
) -> Pin<Box<dyn Future<Output = Result<Paused, RunError>> + Send + 'a>> {
    Box::pin(async move {
        if durable.is_none() && lanes::applies(&options) {
            let deadline = Deadline::new(options.deadline);
            return lanes::drive(graph, run, options.run_seed(), log, cancel, deadline).await;
        }
        let restored = durable.as_ref().map_or(&[][..], |d| d.restored.as_slice());
        let mut nodes = Readiness::new(graph, restored);
        if durable.as_ref().is_some_and(|d| d.resumed) {
            let count = restored.iter().filter(|&&done| done).count();
            log.emit(EventKind::RunResumed {
                workflow: graph.name.into(),
                restored: u32::try_from(count).unwrap_or(u32::MAX),
            });
        } else {
            log.emit(EventKind::RunStarted {
                workflow: graph.name.into(),
            });
        }
        let limit = options
            .max_concurrency
            .map_or(usize::MAX, NonZeroUsize::get);
        let mut in_flight = InFlight::new(options.parallelism);
        let seed = options.run_seed();
        let is_durable = durable.is_some();
        let cache = durable.as_ref().map(|d| Arc::clone(&d.cache));
        let mut deadline = Deadline::new(options.deadline);
        // Made once: a new one each time round would join and leave the signal's list of
        // waiters for every completion.
        let mut cancelled = pin!(cancel.cancelled());
        loop {
            while in_flight.len() < limit {
                let Some(node) = nodes.ready.pop_front() else {
                    break;
                };
                let only = in_flight.len() == 0 && nodes.ready.is_empty();
                let step = node_attempts(
                    Arc::clone(&run),
                    graph,
                    node,
                    Arc::clone(&log),
                    (seed, is_durable),
                    cache.clone(),
                );
                // A step task's spans are children of the run's span, on whichever thread.
                in_flight.push(step.instrument(tracing::Span::current()), only);
            }
            if in_flight.len() == 0 {
                break;
            }
            let completion = tokio::select! {
                biased;
                () = &mut cancelled => {
                    in_flight.shutdown().await;
                    log.emit(EventKind::RunCancelled { duration: log.elapsed() });
                    return Err(RunError::Cancelled);
                }
                error = deadline.expired() => {
                    in_flight.shutdown().await;
                    log.emit(EventKind::RunFailed {
                        node: "".into(),
                        error: error.to_string(),
                        duration: log.elapsed(),
                    });
                    return Err(error);
                }
                completion = in_flight.next() => completion,
            };
            let failure = settle(
                graph,
                &*run,
                completion,
                &mut in_flight,
                &mut nodes,
                &log,
                durable.as_mut(),
            )
            .await;
            let Some(failure) = failure else {
                continue;
            };
            in_flight.shutdown().await;
            emit_failure(&log, &failure);
            return Err(failure);
        }
        drop(in_flight);
        Ok(nodes.paused)
    })
}

/// The node of a run that paused (the first one), with its request.
pub(crate) type Paused = Option<(NodeId, serde_json::Value)>;

/// The end of a dataflow run whose steps all ended: its output, or its pause.
fn output<W: Compiled>(
    graph: &'static Graph,
    run: Arc<W::Run>,
    paused: Paused,
    log: &EventLog,
) -> Result<W::Output, RunError> {
    if let Some((node, request)) = paused {
        let node = graph.node(node).name;
        log.emit(EventKind::RunWaiting {
            node: node.into(),
            duration: log.elapsed(),
        });
        return Err(RunError::Waiting { node, request });
    }
    let output = Arc::into_inner(run).and_then(W::output);
    let Some(output) = output else {
        let error = "the run ended without its output".to_owned();
        log.emit(EventKind::RunFailed {
            node: "".into(),
            error: error.clone(),
            duration: log.elapsed(),
        });
        return Err(RunError::Internal(error));
    };
    log.emit(EventKind::RunFinished {
        duration: log.elapsed(),
    });
    Ok(output)
}

/// Takes in a node completion, and every other one already at hand in a durable run: marks
/// their dependents ready, skips what their policies skip, and in a durable run stores
/// their checkpoints in one transaction before anything depends on them. Returns the
/// error that fails the run, if any.
async fn settle(
    graph: &'static Graph,
    run: &dyn Nodes,
    completion: Option<Result<Completion, RunError>>,
    in_flight: &mut InFlight<impl Future<Output = Completion> + Send + 'static>,
    nodes: &mut Readiness,
    log: &EventLog,
    mut durable: Option<&mut Durability<'_>>,
) -> Option<RunError> {
    let mut failure = None;
    let mut batch = Vec::new();
    let mut next = Some(completion);
    while let Some(completion) = next.take() {
        if durable.is_some() {
            // Every completion already at hand goes into one store transaction.
            if let Some(Some(more)) = in_flight.next().now_or_never() {
                next = Some(Some(more));
            }
        }
        match completion {
            Some(Ok((node, Ok(Finished::Done(done))))) => match &durable {
                Some(_) => match checkpoint(graph, run, node, done, log) {
                    Ok(checkpoint) => batch.push((node, checkpoint)),
                    Err(error) => {
                        failure.get_or_insert(error);
                    }
                },
                None => nodes.done(node),
            },
            Some(Ok((node, Ok(Finished::Skipped)))) => nodes.skip(node, log),
            Some(Ok((node, Ok(Finished::Paused(request))))) => {
                // The nodes downstream wait for the answer; the others go on.
                nodes.paused.get_or_insert((node, request));
            }
            Some(Ok((node, Err((step, source))))) => {
                failure.get_or_insert(RunError::Step {
                    node: graph.node(node).name,
                    step,
                    source,
                });
            }
            Some(Err(error)) => {
                failure.get_or_insert(error);
            }
            None => {
                failure.get_or_insert(RunError::Internal("no step in flight".to_owned()));
            }
        }
    }
    if let Some(durable) = &mut durable
        && !batch.is_empty()
    {
        let (done, checkpoints): (Vec<NodeId>, Vec<Checkpoint>) = batch.into_iter().unzip();
        // Nothing starts before the write below: the scheduler is here until it returns.
        for node in done {
            nodes.done(node);
        }
        if failure.is_none()
            && in_flight.len() == 0
            && nodes.ready.is_empty()
            && nodes.paused.is_none()
        {
            // The run's last checkpoints: they go with its end, in one write.
            durable.recorder.last = Some((checkpoints, log.next_seq()));
            return None;
        }
        let written = durable
            .recorder
            .write(log, |store, id, events| {
                store.checkpoint(id, checkpoints, events)
            })
            .await;
        if let Err(error) = written {
            failure.get_or_insert(error);
        }
    }
    failure
}

/// The checkpoint of a node that completed in a durable run; emits its `step_succeeded`
/// event, which the checkpoint's transaction stores.
fn checkpoint(
    graph: &'static Graph,
    run: &dyn Nodes,
    node: NodeId,
    done: Done,
    log: &EventLog,
) -> Result<Checkpoint, RunError> {
    let def = graph.node(node);
    let output = run.save(node).map_err(|source| RunError::Step {
        node: def.name,
        step: def.step,
        source,
    })?;
    if let Some((attempt, duration)) = done.success {
        log.emit(EventKind::StepSucceeded {
            node: def.name.into(),
            attempt,
            duration,
        });
    }
    let finished_at = Timestamp::now();
    Ok(Checkpoint {
        node: def.name.to_owned(),
        output,
        attempts: done.attempts,
        started_at: done.started.unwrap_or(finished_at),
        finished_at,
        writes: done.writes,
    })
}

/// Which nodes of a dataflow run may start: how many inputs each one still waits for, and
/// which were skipped.
struct Readiness {
    graph: &'static Graph,
    waiting_for: Vec<usize>,
    skipped: Vec<bool>,
    /// Nodes whose inputs all exist, in the order they became ready.
    ready: VecDeque<NodeId>,
    /// The first pause node that asked for input, with its request: the nodes downstream
    /// of it wait for the answer.
    paused: Option<(NodeId, serde_json::Value)>,
}

impl Readiness {
    /// The nodes of a run in which the nodes marked in `restored` have completed already.
    fn new(graph: &'static Graph, restored: &[bool]) -> Self {
        let restored = |node: NodeId| restored.get(node.0).copied().unwrap_or(false);
        let waiting_for: Vec<usize> = graph
            .nodes
            .iter()
            .map(|n| n.deps.iter().filter(|&&dep| !restored(dep)).count())
            .collect();
        let ready = (0..graph.nodes.len())
            .map(NodeId)
            .filter(|&node| waiting_for[node.0] == 0 && !restored(node))
            .collect();
        Self {
            graph,
            waiting_for,
            skipped: vec![false; graph.nodes.len()],
            ready,
            paused: None,
        }
    }

    /// `node`'s output exists: its dependents stop waiting for it.
    fn done(&mut self, node: NodeId) {
        for &dependent in self.graph.node(node).dependents {
            self.arrived(dependent);
        }
    }

    fn arrived(&mut self, node: NodeId) {
        self.waiting_for[node.0] -= 1;
        if self.waiting_for[node.0] == 0 && !self.skipped[node.0] {
            self.ready.push_back(node);
        }
    }

    /// Skips `node` (whose policy skipped it) and every node downstream of it that needs
    /// its output, emitting a `step_skipped` event for each; a node that reads a skipped
    /// node with `.ok()` only stops waiting for it.
    fn skip(&mut self, node: NodeId, log: &EventLog) {
        let mut readers = Vec::new();
        skip_downstream(self.graph, node, log, &mut self.skipped, |reader| {
            readers.push(reader);
        });
        for reader in readers {
            self.arrived(reader);
        }
    }
}

/// Marks `node` skipped in `skipped`, and every node downstream of it that needs its
/// output, emitting a `step_skipped` event for each; calls `reads` for each node that reads
/// a skipped node with `.ok()` (once per skipped node it reads), which goes on without it.
pub(crate) fn skip_downstream(
    graph: &'static Graph,
    node: NodeId,
    log: &EventLog,
    skipped: &mut [bool],
    mut reads: impl FnMut(NodeId),
) {
    let cause = graph.node(node).name;
    let mut pending = VecDeque::from([node]);
    skipped[node.0] = true;
    log.emit(EventKind::StepSkipped {
        node: cause.into(),
        cause: cause.into(),
    });
    while let Some(gone) = pending.pop_front() {
        for &dependent in graph.node(gone).dependents {
            if skipped[dependent.0] {
                continue;
            }
            let def = graph.node(dependent);
            if def.optional.contains(&gone) {
                reads(dependent);
            } else {
                skipped[dependent.0] = true;
                log.emit(EventKind::StepSkipped {
                    node: def.name.into(),
                    cause: cause.into(),
                });
                pending.push_back(dependent);
            }
        }
    }
}

/// How one node of a dataflow run ended, when a worker runs it alone.
pub(crate) enum NodeOutcome {
    /// It completed: its checkpoint (its `step_succeeded` event is in the log).
    Done(Checkpoint),
    /// It failed and its policy skips it.
    Skipped,
    /// It is a pause, asking for outside input.
    Paused(serde_json::Value),
    /// It failed the run.
    Failed(RunError),
}

/// Runs one node of a durable dataflow run whose inputs are in `run` already (a worker's
/// task): its attempts and failure policy, as in a run driven by one process.
///
/// Boxed, and not generic, as [`drive_graph`] is: compiled once, in this crate.
pub(crate) fn one_node(
    graph: &'static Graph,
    run: Arc<dyn Nodes>,
    node: NodeId,
    log: Arc<EventLog>,
    seed: u64,
    cache: Arc<NodeCache>,
) -> Pin<Box<dyn Future<Output = NodeOutcome> + Send>> {
    Box::pin(async move {
        let (_, finished) =
            node_attempts(&run, graph, node, &log, (seed, true), Some(&cache)).await;
        match finished {
            Ok(Finished::Done(done)) => match checkpoint(graph, &*run, node, done, &log) {
                Ok(checkpoint) => NodeOutcome::Done(checkpoint),
                Err(error) => NodeOutcome::Failed(error),
            },
            Ok(Finished::Skipped) => NodeOutcome::Skipped,
            Ok(Finished::Paused(request)) => NodeOutcome::Paused(request),
            Err((step, source)) => NodeOutcome::Failed(RunError::Step {
                node: graph.node(node).name,
                step,
                source,
            }),
        }
    })
}

/// Emits the `run_failed` event of a run that `error` ends, as a run driven by one process
/// does.
pub(crate) fn emit_failure(log: &EventLog, error: &RunError) {
    let (node, message) = match error {
        RunError::Step { node, source, .. } => (*node, source.to_string()),
        RunError::StepLimit { node, .. } => (*node, error.to_string()),
        other => ("", other.to_string()),
    };
    log.emit(EventKind::RunFailed {
        node: node.into(),
        error: message,
        duration: log.elapsed(),
    });
}

/// Runs one node of a dataflow workflow: its attempts, then, if they fail, what its
/// failure policy says; a cached node first looks for its output in the cache.
/// `(seed, durable)`: the run's jitter seed, and whether the scheduler emits
/// `step_succeeded` with the node's checkpoint.
///
/// Returns an `async move` block, not an `async fn`'s future, which would keep each
/// argument twice (see [`attempts`]).
#[expect(
    clippy::manual_async_fn,
    reason = "an `async fn` future holds its arguments twice (rust-lang/rust#62958)"
)]
fn node_attempts(
    run: impl Borrow<Arc<dyn Nodes>>,
    graph: &'static Graph,
    node: NodeId,
    log: impl Borrow<Arc<EventLog>>,
    (seed, durable): (u64, bool),
    cache: Option<impl Borrow<Arc<NodeCache>>>,
) -> impl Future<Output = Completion> {
    async move {
        let (run, log) = (&**run.borrow(), log.borrow());
        if durable || cache.is_some() {
            // Boxed: a run in memory (the common case, and the one where a step's overhead
            // shows) should not carry a store's state in every step's task. A stored step
            // costs a checkpoint; one more allocation is nothing beside it.
            let cache = cache.as_ref().map(Borrow::borrow);
            return Box::pin(kept_node_attempts(
                run,
                graph,
                node,
                log,
                (seed, durable),
                cache,
            ))
            .await;
        }
        let def = graph.node(node);
        let (result, made, took) = attempts(
            Attempts::of(def),
            (log, None),
            (seed, node.0 as u64),
            true,
            |_| run.node(node),
        )
        .await;
        if let Some(cost) = graph.costs.get(node.0) {
            cost.record(took);
        }
        let done = |made: u32, _: Option<(u32, Duration)>| {
            Finished::Done(Done {
                success: None,
                attempts: made,
                started: None,
                writes: Vec::new(),
            })
        };
        let error = match result {
            Ok(()) => return (node, Ok(done(made, None))),
            Err(error) => error,
        };
        let outcome = Box::pin(fail_over(
            run,
            def,
            node,
            (log, None),
            error,
            made,
            (seed, false),
            done,
        ))
        .await;
        (node, outcome)
    }
}

/// [`node_attempts`] in a run with a store: the cache first, and `step_succeeded` left to
/// the node's checkpoint when `durable`.
async fn kept_node_attempts(
    run: &dyn Nodes,
    graph: &'static Graph,
    node: NodeId,
    log: &Arc<EventLog>,
    (seed, durable): (u64, bool),
    cache: Option<&Arc<NodeCache>>,
) -> Completion {
    let def = graph.node(node);
    let jitter = (seed, node.0 as u64);
    let started = durable.then(Timestamp::now);
    // A transactional step's statements, in a durable run on a store that runs them.
    let writes = cache
        .as_ref()
        .filter(|cache| cache.store.runs_statements())
        .map(|_| Writes::default());
    let done = |made: u32, success: Option<(u32, Duration)>| {
        Finished::Done(Done {
            success: success.filter(|_| durable),
            attempts: made,
            started,
            writes: take_writes(writes.as_ref()),
        })
    };
    // The cache's and the failure policies' futures are boxed, and made only when they
    // are needed.
    let cached = cache.and_then(|cache| Some((cache.entry(graph, def, run)?, cache)));
    if let Some((entry, cache)) = &cached
        && Box::pin(cache.lookup(entry, run, node, def, log)).await
    {
        return (node, Ok(done(0, None)));
    }
    let (result, made, duration) = attempts(
        Attempts::of(def),
        (log, writes.as_ref()),
        jitter,
        !durable,
        |_| run.node(node),
    )
    .await;
    let Err(error) = result else {
        if let Some((entry, cache)) = cached {
            Box::pin(cache.keep(entry, run, node, def)).await;
        }
        return (node, Ok(done(made, Some((made, duration)))));
    };
    let outcome = Box::pin(fail_over(
        run,
        def,
        node,
        (log, writes.as_ref()),
        error,
        made,
        (seed, durable),
        done,
    ))
    .await;
    (node, outcome)
}

/// What a node's failure policy makes of its failed attempts (`made` of them, the last
/// failing with `error`); an attempt that asked for a pause pauses the node instead.
#[allow(clippy::too_many_arguments)] // the parts of `node_attempts` it goes on with
async fn fail_over(
    run: &dyn Nodes,
    def: &'static NodeDef,
    node: NodeId,
    (log, writes): (&Arc<EventLog>, Option<&Writes>),
    error: StepError,
    made: u32,
    (seed, durable): (u64, bool),
    done: impl Fn(u32, Option<(u32, Duration)>) -> Finished,
) -> Result<Finished, Failure> {
    if let Some(request) = error.pause_request() {
        return Ok(Finished::Paused(request.clone()));
    }
    let jitter = (seed, node.0 as u64);
    match def.on_failure {
        OnFailure::Fail => Err((def.step, error)),
        OnFailure::Skip => Ok(Finished::Skipped),
        OnFailure::FallbackValue => {
            log.emit(EventKind::FallbackUsed {
                node: def.name.into(),
                step: None,
            });
            run.fallback(node)
                .await
                .map(|()| done(made, None))
                .map_err(|error| (def.step, error))
        }
        OnFailure::FallbackStep { step, ref policy } => {
            log.emit(EventKind::FallbackUsed {
                node: def.name.into(),
                step: Some(step.into()),
            });
            let fallback = Attempts {
                node: def.name,
                step,
                policy,
                before: made,
            };
            // A salt of its own, so the fallback's delays do not repeat the node's.
            let jitter = (seed, jitter.1 | 1 << 63);
            let (result, more, duration) =
                attempts(fallback, (log, writes), jitter, !durable, |_| {
                    run.fallback(node)
                })
                .await;
            result
                .map(|()| done(made + more, Some((made + more, duration))))
                .map_err(|error| (step, error))
        }
    }
}

/// The random draw for the delay after attempt `attempt`: a function of the run's seed,
/// the node's salt (its index; in a state graph, also its step number) and the attempt.
fn draw((seed, salt): (u64, u64), attempt: u32) -> u64 {
    let mixed = seed
        ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(attempt).wrapping_mul(0xD1B5_4A32_D192_ED03);
    fastrand::Rng::with_seed(mixed).u64(..)
}

/// Whose attempts [`attempts`] runs: a node's step, or its fallback step. Small, and read
/// in place: every step's task holds it.
#[derive(Clone, Copy)]
struct Attempts {
    node: &'static str,
    step: &'static str,
    policy: &'static Policy,
    /// Attempts of the node made before these (by the step a fallback replaces): events
    /// number attempts per node.
    before: u32,
}

impl Attempts {
    fn of(def: &'static NodeDef) -> Self {
        Self {
            node: def.name,
            step: def.step,
            policy: &def.policy,
            before: 0,
        }
    }
}

/// Runs the attempts of one step of a node, with its timeout and retries, each in a
/// `tracing` span; `attempt_future` makes the future of attempt number `n` (from 1).
/// Emits the attempts' events, except `step_succeeded` when `emit_success` is false (a
/// durable run emits it with the node's checkpoint). Returns the result, how many attempts
/// were made, and how long the last one took.
///
/// A function that returns an `async move` block rather than an `async fn`: an `async fn`
/// keeps each argument twice in its future (rust-lang/rust#62958), and every step's task
/// holds this one.
#[expect(
    clippy::manual_async_fn,
    reason = "an `async fn` future holds its arguments twice (rust-lang/rust#62958)"
)]
fn attempts<'a, T, F, Fut>(
    who: Attempts,
    (log, writes): (&'a Arc<EventLog>, Option<&'a Writes>),
    jitter: (u64, u64),
    emit_success: bool,
    mut attempt_future: F,
) -> impl Future<Output = (Result<T, StepError>, u32, Duration)> + 'a
where
    T: 'a,
    F: FnMut(u32) -> Fut + 'a,
    Fut: Future<Output = Result<T, StepError>> + 'a,
{
    async move {
        // The fields are read where they are used, not bound: every binding that lives across
        // the attempt's `.await` is a copy in the step task's future.
        let mut attempt = 1;
        loop {
            let number = who.before + attempt;
            let started = log.elapsed();
            log.emit_at(
                started,
                EventKind::StepStarted {
                    node: who.node.into(),
                    attempt: number,
                },
            );
            // Each attempt starts with no statements: a failed one's are dropped.
            take_writes(writes);
            let scope = StepScope {
                log: Arc::clone(log),
                node: who.node,
                writes: writes.cloned(),
            };
            let step = CURRENT_STEP.scope(
                scope,
                AssertUnwindSafe(attempt_future(attempt)).catch_unwind(),
            );
            // Not an `async` block, which would hold `step` twice.
            let step = match who.policy.timeout {
                Some(limit) => Either::Left(Box::pin(tokio::time::timeout(limit, step)).map(
                    move |outcome| outcome.unwrap_or_else(|_| Ok(Err(StepError::timed_out(limit)))),
                )),
                None => Either::Right(step),
            };
            // The span lives in the future it instruments, and is read back from there.
            let mut instrumented = pin!(step.instrument(tracing::info_span!(
                "workflow.step",
                node = who.node,
                step = who.step,
                attempt = number,
                outcome = tracing::field::Empty,
            )));
            let outcome = instrumented.as_mut().await;
            let result =
                outcome.unwrap_or_else(|panic| Err(StepError::panicked(&panic_message(&*panic))));
            let retry = matches!(&result, Err(error) if error.is_retryable() && attempt <= who.policy.retries);
            instrumented.span().record(
                "outcome",
                match &result {
                    Ok(_) => "succeeded",
                    Err(_) if retry => "retrying",
                    Err(_) => "failed",
                },
            );
            let ended = log.elapsed();
            let duration = ended.saturating_sub(started);
            match result {
                Ok(value) => {
                    if emit_success {
                        log.emit_at(
                            ended,
                            EventKind::StepSucceeded {
                                node: who.node.into(),
                                attempt: number,
                                duration,
                            },
                        );
                    }
                    return (Ok(value), attempt, duration);
                }
                Err(error) if error.kind() == ErrorKind::Paused => {
                    return (Err(error), attempt, duration);
                }
                Err(error) if retry => {
                    let delay = who
                        .policy
                        .jittered_delay_before(attempt + 1, draw(jitter, attempt));
                    log.emit(EventKind::StepRetrying {
                        node: who.node.into(),
                        attempt: number,
                        error: error.to_string(),
                        delay,
                    });
                    // Boxed: a step's future should not carry a timer for a rare retry.
                    Box::pin(tokio::time::sleep(delay)).await;
                    attempt += 1;
                }
                Err(error) => {
                    log.emit(EventKind::StepFailed {
                        node: who.node.into(),
                        attempt: number,
                        error: error.to_string(),
                        duration,
                    });
                    return (Err(error), attempt, duration);
                }
            }
        }
    }
}

/// Where a run of a state graph starts: its state and, for a resumed run, its loop
/// counters, step count and next node.
pub(crate) struct Walk<S> {
    pub(crate) state: S,
    /// Per node, how many times its route was taken.
    pub(crate) rounds: Vec<u32>,
    /// How many nodes have completed.
    pub(crate) steps: u32,
    /// The node to run next; `None` for the graph's start.
    pub(crate) next: Option<Target>,
    /// Whether the run is taken up again from its store.
    pub(crate) resumed: bool,
}

impl<S> Walk<S> {
    /// A new run from `state`.
    pub(crate) fn start(state: S) -> Self {
        Self {
            state,
            rounds: Vec::new(),
            steps: 0,
            next: None,
            resumed: false,
        }
    }
}

/// What a run of a state graph needs to be durable: its recorder and how to serialize
/// its state.
pub(crate) struct StateDurability<'a, S> {
    pub(crate) recorder: &'a mut Recorder,
    pub(crate) save: fn(&S) -> Result<serde_json::Value, StepError>,
    pub(crate) load: fn(serde_json::Value) -> Result<S, StepError>,
    /// The graph's structural hash, part of its cached nodes' keys.
    pub(crate) graph_hash: Arc<str>,
    /// For a run that keeps its history, the state before the next node, as stored.
    pub(crate) before: Option<serde_json::Value>,
}

impl<S> StateDurability<'_, S> {
    /// The cache entry of `def` over `state`, if the node is cached.
    fn cache_entry(&self, graph: &Graph, def: &NodeDef, state: &S) -> Option<cache::Entry> {
        def.policy.cache?;
        let json = self.state_json(state, def)?;
        cache::state_entry(graph, &self.graph_hash, def, &json)
    }

    /// A cached node's outcome: the state after it and the arm it took.
    async fn cache_lookup(&self, entry: &cache::Entry, def: &NodeDef) -> Option<(S, usize)> {
        let (state, arm) = cache::state_lookup(&*self.recorder.store, entry, def).await?;
        match (self.load)(state) {
            Ok(state) => Some((state, arm)),
            Err(error) => {
                tracing::warn!(node = def.name, %error, "cache entry ignored: it does not decode");
                None
            }
        }
    }

    /// The state after a cached node, for its cache entry.
    fn state_json(&self, state: &S, def: &NodeDef) -> Option<serde_json::Value> {
        (self.save)(state)
            .inspect_err(|error| {
                tracing::warn!(node = def.name, %error, "not cached: the state does not serialize");
            })
            .ok()
    }
}

pub(crate) async fn drive_state<W: CompiledStateGraph>(
    id: RunId,
    ctx: Arc<W::Context>,
    walk: Walk<W::State>,
    options: RunOptions,
    log: Arc<EventLog>,
    cancel: Canceller,
    durable: Option<StateDurability<'_, W::State>>,
) -> Result<W::State, RunError> {
    let graph = W::graph();
    let span = run_span(graph, id);
    let result = async {
        if walk.resumed {
            log.emit(EventKind::RunResumed {
                workflow: graph.name.into(),
                restored: walk.steps,
            });
        } else {
            log.emit(EventKind::RunStarted {
                workflow: graph.name.into(),
            });
        }
        let mut deadline = Deadline::new(options.deadline);
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => Err(RunError::Cancelled),
            error = deadline.expired() => Err(error),
            result = walk_graph::<W>(graph, &ctx, walk, &options, &log, durable) => result,
        };
        match &result {
            Ok(_) => log.emit(EventKind::RunFinished {
                duration: log.elapsed(),
            }),
            Err(RunError::Cancelled) => log.emit(EventKind::RunCancelled {
                duration: log.elapsed(),
            }),
            Err(RunError::Waiting { node, .. }) => log.emit(EventKind::RunWaiting {
                node: (*node).into(),
                duration: log.elapsed(),
            }),
            Err(error) => emit_failure(&log, error),
        }
        result
    }
    .instrument(span.clone())
    .await;
    span.record("outcome", outcome(&result));
    result
}

/// The `tracing` span of a run; its steps' spans are its children.
fn run_span(graph: &Graph, id: RunId) -> tracing::Span {
    tracing::info_span!(
        "workflow.run",
        workflow = graph.name,
        run_id = %id,
        outcome = tracing::field::Empty,
    )
}

/// How a run ended, for its span.
fn outcome<T>(result: &Result<T, RunError>) -> &'static str {
    match result {
        Ok(_) => "succeeded",
        Err(RunError::Cancelled) => "cancelled",
        Err(_) => "failed",
    }
}

/// Walks a state graph from where `walk` says to `END`, one node at a time; in a durable
/// run, stores the state after every node.
async fn walk_graph<W: CompiledStateGraph>(
    graph: &'static Graph,
    ctx: &Arc<W::Context>,
    walk: Walk<W::State>,
    options: &RunOptions,
    log: &Arc<EventLog>,
    mut durable: Option<StateDurability<'_, W::State>>,
) -> Result<W::State, RunError> {
    let max_steps = options.max_steps;
    let seed = options.run_seed();
    let Some(def) = graph.state_graph() else {
        return Err(RunError::Internal(format!(
            "`{}` is not a state graph",
            graph.name
        )));
    };
    let Walk {
        mut state,
        mut rounds,
        mut steps,
        next,
        ..
    } = walk;
    rounds.resize(graph.nodes.len(), 0);
    let mut current = next.unwrap_or(Target::Node(def.start));
    // A transactional step's statements, in a durable run on a store that runs them.
    let writes = durable
        .as_ref()
        .filter(|durable| durable.recorder.store.runs_statements())
        .map(|_| Writes::default());
    while let Target::Node(node) = current {
        let node_def = graph.node(node);
        if steps >= max_steps {
            return Err(RunError::StepLimit {
                limit: max_steps,
                node: node_def.name,
            });
        }
        steps += 1;
        let stepped = state_step::<W>(
            (graph, def, node),
            ctx,
            state,
            (&mut rounds, steps),
            (log, seed),
            durable.as_mut(),
            writes.as_ref(),
        )
        .await?;
        state = stepped.state;
        current = stepped.next;
        if let (Some(durable), Some(checkpoint)) = (&mut durable, stepped.checkpoint) {
            durable
                .recorder
                .write(log, |store, id, events| {
                    store.save_state(id, checkpoint, events)
                })
                .await?;
        }
    }
    Ok(state)
}

/// Where one node of a state graph took its run.
pub(crate) struct StateStepped<S> {
    /// The state after the node.
    pub(crate) state: S,
    /// Where the run goes next.
    pub(crate) next: Target,
    /// In a durable run, what to store: the state after the node, with its step's
    /// statements.
    pub(crate) checkpoint: Option<StateCheckpoint>,
}

/// Runs one node of a state graph (the run's `steps`-th): from its cache if it has an
/// entry, else its attempts; then its route, counted in `rounds`.
pub(crate) async fn state_step<W: CompiledStateGraph>(
    (graph, def, node): (&'static Graph, &'static StateGraphDef, NodeId),
    ctx: &Arc<W::Context>,
    mut state: W::State,
    (rounds, steps): (&mut [u32], u32),
    (log, seed): (&Arc<EventLog>, u64),
    mut durable: Option<&mut StateDurability<'_, W::State>>,
    writes: Option<&Writes>,
) -> Result<StateStepped<W::State>, RunError> {
    let node_def = graph.node(node);
    let started = durable.is_some().then(Timestamp::now);
    let entry = match &durable {
        Some(durable) => durable.cache_entry(graph, node_def, &state),
        None => None,
    };
    let hit = match (&durable, &entry) {
        (Some(durable), Some(entry)) => durable.cache_lookup(entry, node_def).await,
        _ => None,
    };
    let (taken, made) = if let Some((after, arm)) = hit {
        log.emit(EventKind::CacheHit {
            node: node_def.name.into(),
        });
        state = after;
        (arm, 0)
    } else {
        let jitter = (seed, (u64::from(steps) << 32) | node.0 as u64);
        let (after, taken, made) = state_node::<W>(
            ctx,
            node,
            node_def,
            state,
            (log, writes),
            jitter,
            durable.is_some(),
        )
        .await?;
        state = after;
        if let (Some(durable), Some(entry)) = (&durable, entry) {
            let json = durable.state_json(&state, node_def);
            if let Some(json) = json {
                cache::state_keep(&*durable.recorder.store, entry, json, taken, node_def).await;
            }
        }
        (taken, made)
    };
    let next = route(graph, def, node, taken, rounds, log)?;
    let checkpoint = match &mut durable {
        Some(durable) => {
            let step = Stepped {
                node_def,
                steps,
                rounds,
                next,
                attempts: made,
                started,
                writes: take_writes(writes),
            };
            Some(durable.state_checkpoint(graph, &state, step)?)
        }
        None => None,
    };
    Ok(StateStepped {
        state,
        next,
        checkpoint,
    })
}

/// A state graph's node that has just completed, as its durable run stores it.
struct Stepped<'a> {
    node_def: &'static NodeDef,
    /// How many nodes have completed, this one included.
    steps: u32,
    rounds: &'a [u32],
    next: Target,
    attempts: u32,
    started: Option<Timestamp>,
    writes: Vec<Statement>,
}

impl<S> StateDurability<'_, S> {
    /// What the run stores after a node: the state, and its step's statements.
    fn state_checkpoint(
        &mut self,
        graph: &'static Graph,
        state: &S,
        step: Stepped<'_>,
    ) -> Result<StateCheckpoint, RunError> {
        let node_def = step.node_def;
        let after = (self.save)(state).map_err(|source| RunError::Step {
            node: node_def.name,
            step: node_def.step,
            source,
        })?;
        let change = match &mut self.before {
            Some(before) => {
                let change = change(before, &after);
                before.clone_from(&after);
                Some(change)
            }
            None => None,
        };
        Ok(StateCheckpoint {
            step: step.steps,
            node: node_def.name.to_owned(),
            change,
            state: after,
            rounds: step.rounds.to_vec(),
            next: match step.next {
                Target::Node(next) => Some(graph.node(next).name.to_owned()),
                Target::End => None,
            },
            attempts: step.attempts,
            started_at: step.started.unwrap_or_else(Timestamp::now),
            finished_at: Timestamp::now(),
            writes: step.writes,
        })
    }
}

/// The JSON Patch (RFC 6902) that turns `before` into `after`, for a run's history.
pub(crate) fn change(before: &serde_json::Value, after: &serde_json::Value) -> serde_json::Value {
    let patch = json_patch::diff(before, after);
    // A patch is plain JSON (string keys, no custom serializers): it always serializes.
    serde_json::to_value(patch).unwrap_or(serde_json::Value::Null)
}

/// Runs the attempts of one node of a state graph over `state`: returns the state after
/// it, the route arm taken and the attempts made. Each attempt works on its own copy of
/// the state while a retry may follow, so a failed attempt leaves nothing behind; the
/// last attempt takes the state itself. In a durable run, emits `step_succeeded` here
/// (the state's checkpoint stores it).
async fn state_node<W: CompiledStateGraph>(
    ctx: &Arc<W::Context>,
    node: NodeId,
    node_def: &'static NodeDef,
    state: W::State,
    (log, writes): (&Arc<EventLog>, Option<&Writes>),
    jitter: (u64, u64),
    durable: bool,
) -> Result<(W::State, usize, u32), RunError> {
    let retries = node_def.policy.retries;
    let mut kept = Some(state);
    let (result, made, duration) = attempts(
        Attempts::of(node_def),
        (log, writes),
        jitter,
        !durable,
        |attempt| {
            let state = if attempt <= retries {
                kept.clone()
            } else {
                kept.take()
            };
            if let Some(state) = state {
                W::node(ctx, node, state, None)
            } else {
                let lost: StateFuture<W::State> = Box::pin(std::future::ready(Err(
                    StepError::msg("internal error: the state was used up"),
                )));
                lost
            }
        },
    )
    .await;
    let (state, taken) = result.map_err(|source| node_error(node_def, source))?;
    if durable {
        log.emit(EventKind::StepSucceeded {
            node: node_def.name.into(),
            attempt: made,
            duration,
        });
    }
    Ok((state, taken, made))
}

/// The run's error for a node of a state graph whose step ended without its state: its
/// pause, or its failure.
fn node_error(node: &'static NodeDef, source: StepError) -> RunError {
    match source.pause_request() {
        Some(request) => RunError::Waiting {
            node: node.name,
            request: request.clone(),
        },
        None => RunError::Step {
            node: node.name,
            step: node.step,
            source,
        },
    }
}

/// Where a state graph goes after `node` took arm `taken` (0 for a plain edge); counts the
/// route's rounds and emits `routed` or `loop_bound_hit`.
pub(crate) fn route(
    graph: &'static Graph,
    def: &StateGraphDef,
    node: NodeId,
    taken: usize,
    rounds: &mut [u32],
    log: &EventLog,
) -> Result<Target, RunError> {
    let node_def = graph.node(node);
    match def.next.get(node.0) {
        Some(Next::Goto { target }) => Ok(*target),
        Some(Next::Route { arms, bound }) => {
            rounds[node.0] += 1;
            let Some(arm) = arms.get(taken) else {
                return Err(RunError::Internal(format!(
                    "no arm {taken} in `{}`",
                    node_def.name
                )));
            };
            Ok(match bound {
                Some(bound) if arm.loops && rounds[node.0] >= bound.max => {
                    log.emit(EventKind::LoopBoundHit {
                        node: node_def.name.into(),
                        max: bound.max,
                        arm: arm.pattern.into(),
                        to: target_name(graph, bound.target).into(),
                    });
                    bound.target
                }
                _ => {
                    log.emit(EventKind::Routed {
                        node: node_def.name.into(),
                        arm: arm.pattern.into(),
                        to: target_name(graph, arm.target).into(),
                    });
                    arm.target
                }
            })
        }
        None => Err(RunError::Internal(format!(
            "no way on from `{}`",
            node_def.name
        ))),
    }
}

fn target_name(graph: &'static Graph, target: Target) -> &'static str {
    match target {
        Target::Node(id) => graph.nodes.get(id.0).map_or("?", |node| node.name),
        Target::End => "END",
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}
