//! The scheduler: runs a compiled workflow from its static [`Graph`], starting each node the
//! moment its inputs exist, and reports what happens as [`Event`](crate::Event)s.
//!
//! Guarantees: a node starts only after every node it depends on has succeeded; events of a
//! run have gapless sequence numbers and end with exactly one terminal event; when a run
//! fails or is cancelled, every step still running has been dropped before `run` returns.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::events::{EventKind, EventLog, EventStream};
use crate::graph::{Graph, Next, NodeDef, NodeId, Target};
use crate::policy::{OnFailure, Policy};
use crate::private::{Compiled, CompiledStateGraph, StateFuture};
use crate::step::StepError;

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
    /// A new, unique run id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
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
    /// Each step is a tokio task: independent steps run on all worker threads at once.
    /// The right choice for CPU work and the default.
    #[default]
    Tasks,
    /// Every step's future is polled from the run's own task: steps still overlap while
    /// they wait (I/O, LLM calls), never on two threads at once, at a lower cost per step.
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
    /// The defaults: no concurrency limit, one task per step, at most
    /// [`DEFAULT_MAX_STEPS`] node executions in a state graph.
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
    fn run_seed(&self) -> u64 {
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
            Self::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Step { source, .. } => Some(source.as_dyn_error()),
            _ => None,
        }
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

    async fn cancelled(&self) {
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
}

/// The log of a new run: nested in the current step's run when called from inside a step.
fn run_log() -> Arc<EventLog> {
    let log = CURRENT_STEP
        .try_with(|scope| EventLog::nested(Arc::clone(&scope.log), scope.node.into()))
        .unwrap_or_else(|_| EventLog::new());
    Arc::new(log)
}

/// Runs a workflow to completion in the calling task.
pub(crate) async fn run<W: Compiled>(
    ctx: Arc<W::Context>,
    options: RunOptions,
    input: W::Input,
) -> Result<W::Output, RunError> {
    drive::<W>(
        RunId::new(),
        W::new_run(ctx, input),
        options,
        run_log(),
        Canceller::default(),
    )
    .await
}

/// Runs a state graph to completion in the calling task.
pub(crate) async fn run_state<W: CompiledStateGraph>(
    ctx: Arc<W::Context>,
    options: RunOptions,
    state: W::State,
) -> Result<W::State, RunError> {
    drive_state::<W>(
        RunId::new(),
        ctx,
        state,
        options,
        run_log(),
        Canceller::default(),
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
    let run = W::new_run(Arc::clone(ctx), input);
    let options = options.clone();
    spawn(|id, log, cancel| drive::<W>(id, run, options, log, cancel))
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
    spawn(|id, log, cancel| drive_state::<W>(id, ctx, state, options, log, cancel))
}

/// Spawns a run, detached from any step it is started from.
fn spawn<O, F>(drive: impl FnOnce(RunId, Arc<EventLog>, Canceller) -> F) -> RunHandle<O>
where
    F: Future<Output = Result<O, RunError>> + Send + 'static,
    O: Send + 'static,
{
    let id = RunId::new();
    let log = Arc::new(EventLog::new());
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
    Done,
    /// It failed and its policy skips it.
    Skipped,
}

/// A node that failed the run: the step that failed (the node's, or its fallback step) and
/// its error.
type Failure = (&'static str, StepError);

/// The steps in flight of one run.
enum InFlight<F> {
    Tasks(JoinSet<Completion>),
    SingleTask(FuturesUnordered<F>),
}

impl<F: Future<Output = Completion> + Send + 'static> InFlight<F> {
    fn new(parallelism: Parallelism) -> Self {
        match parallelism {
            Parallelism::Tasks => Self::Tasks(JoinSet::new()),
            Parallelism::SingleTask => Self::SingleTask(FuturesUnordered::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Tasks(set) => set.len(),
            Self::SingleTask(set) => set.len(),
        }
    }

    fn push(&mut self, future: F) {
        match self {
            Self::Tasks(set) => {
                set.spawn(future);
            }
            Self::SingleTask(set) => set.push(future),
        }
    }

    async fn next(&mut self) -> Option<Result<Completion, RunError>> {
        match self {
            Self::Tasks(set) => set.join_next().await.map(|joined| {
                joined.map_err(|error| {
                    RunError::Internal(format!("a step task ended abnormally: {error}"))
                })
            }),
            Self::SingleTask(set) => set.next().await.map(Ok),
        }
    }

    /// Cancels every step in flight and waits until each one has been dropped.
    async fn shutdown(self) {
        match self {
            Self::Tasks(mut set) => set.shutdown().await,
            Self::SingleTask(set) => drop(set),
        }
    }
}

async fn drive<W: Compiled>(
    id: RunId,
    run: W::Run,
    options: RunOptions,
    log: Arc<EventLog>,
    cancel: Canceller,
) -> Result<W::Output, RunError> {
    let graph = W::graph();
    let span = run_span(graph, id);
    let result = drive_graph::<W>(graph, Arc::new(run), options, log, cancel)
        .instrument(span.clone())
        .await;
    span.record("outcome", outcome(&result));
    result
}

async fn drive_graph<W: Compiled>(
    graph: &'static Graph,
    run: Arc<W::Run>,
    options: RunOptions,
    log: Arc<EventLog>,
    cancel: Canceller,
) -> Result<W::Output, RunError> {
    log.emit(EventKind::RunStarted {
        workflow: graph.name.into(),
    });
    let mut nodes = Readiness::new(graph);
    let limit = options
        .max_concurrency
        .map_or(usize::MAX, NonZeroUsize::get);
    let mut in_flight = InFlight::new(options.parallelism);
    let seed = options.run_seed();
    let mut deadline = Deadline::new(options.deadline);
    loop {
        while in_flight.len() < limit {
            let Some(node) = nodes.ready.pop_front() else {
                break;
            };
            // A step task's spans are children of the run's span, on whichever thread.
            in_flight.push(
                node_attempts::<W>(Arc::clone(&run), graph, node, Arc::clone(&log), seed)
                    .instrument(tracing::Span::current()),
            );
        }
        if in_flight.len() == 0 {
            break;
        }
        let completion = tokio::select! {
            biased;
            () = cancel.cancelled() => {
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
        let failure = match completion {
            Some(Ok((node, Ok(Finished::Done)))) => {
                nodes.done(node);
                continue;
            }
            Some(Ok((node, Ok(Finished::Skipped)))) => {
                nodes.skip(node, &log);
                continue;
            }
            Some(Ok((node, Err((step, source))))) => RunError::Step {
                node: graph.node(node).name,
                step,
                source,
            },
            Some(Err(error)) => error,
            None => RunError::Internal("no step in flight".to_owned()),
        };
        in_flight.shutdown().await;
        let (node, error) = match &failure {
            RunError::Step { node, source, .. } => (*node, source.to_string()),
            other => ("", other.to_string()),
        };
        log.emit(EventKind::RunFailed {
            node: node.into(),
            error,
            duration: log.elapsed(),
        });
        return Err(failure);
    }
    drop(in_flight);
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

/// Which nodes of a dataflow run may start: how many inputs each one still waits for, and
/// which were skipped.
struct Readiness {
    graph: &'static Graph,
    waiting_for: Vec<usize>,
    skipped: Vec<bool>,
    /// Nodes whose inputs all exist, in the order they became ready.
    ready: VecDeque<NodeId>,
}

impl Readiness {
    fn new(graph: &'static Graph) -> Self {
        Self {
            graph,
            waiting_for: graph.nodes.iter().map(|n| n.deps.len()).collect(),
            skipped: vec![false; graph.nodes.len()],
            ready: graph.roots().collect(),
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
        let cause = self.graph.node(node).name;
        let mut pending = VecDeque::from([node]);
        self.skipped[node.0] = true;
        log.emit(EventKind::StepSkipped {
            node: cause.into(),
            cause: cause.into(),
        });
        while let Some(gone) = pending.pop_front() {
            for &dependent in self.graph.node(gone).dependents {
                if self.skipped[dependent.0] {
                    continue;
                }
                let def = self.graph.node(dependent);
                if def.optional.contains(&gone) {
                    self.arrived(dependent);
                } else {
                    self.skipped[dependent.0] = true;
                    log.emit(EventKind::StepSkipped {
                        node: def.name.into(),
                        cause: cause.into(),
                    });
                    pending.push_back(dependent);
                }
            }
        }
    }
}

/// Runs one node of a dataflow workflow: its attempts, then, if they fail, what its
/// failure policy says.
async fn node_attempts<W: Compiled>(
    run: Arc<W::Run>,
    graph: &'static Graph,
    node: NodeId,
    log: Arc<EventLog>,
    seed: u64,
) -> Completion {
    let def = graph.node(node);
    let jitter = (seed, node.0 as u64);
    let (result, made) = attempts(Attempts::of(def), &log, jitter, |_| W::node(&run, node)).await;
    let Err(error) = result else {
        return (node, Ok(Finished::Done));
    };
    let outcome = match def.on_failure {
        OnFailure::Fail => Err((def.step, error)),
        OnFailure::Skip => Ok(Finished::Skipped),
        OnFailure::FallbackValue => {
            log.emit(EventKind::FallbackUsed {
                node: def.name.into(),
                step: None,
            });
            W::fallback(&run, node)
                .await
                .map(|()| Finished::Done)
                .map_err(|error| (def.step, error))
        }
        OnFailure::FallbackStep { step, policy } => {
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
            let (result, _) = attempts(fallback, &log, jitter, |_| W::fallback(&run, node)).await;
            result
                .map(|()| Finished::Done)
                .map_err(|error| (step, error))
        }
    };
    (node, outcome)
}

/// The random draw for the delay after attempt `attempt`: a function of the run's seed,
/// the node's salt (its index; in a state graph, also its step number) and the attempt.
fn draw((seed, salt): (u64, u64), attempt: u32) -> u64 {
    let mixed = seed
        ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(attempt).wrapping_mul(0xD1B5_4A32_D192_ED03);
    fastrand::Rng::with_seed(mixed).u64(..)
}

/// Whose attempts [`attempts`] runs: a node's step, or its fallback step.
#[derive(Clone, Copy)]
struct Attempts {
    node: &'static str,
    step: &'static str,
    policy: Policy,
    /// Attempts of the node made before these (by the step a fallback replaces): events
    /// number attempts per node.
    before: u32,
}

impl Attempts {
    fn of(def: &'static NodeDef) -> Self {
        Self {
            node: def.name,
            step: def.step,
            policy: def.policy,
            before: 0,
        }
    }
}

/// Runs the attempts of one step of a node, with its timeout and retries, each in a
/// `tracing` span; `attempt_future` makes the future of attempt number `n` (from 1).
/// Returns the result and how many attempts were made.
async fn attempts<T, F, Fut>(
    who: Attempts,
    log: &Arc<EventLog>,
    jitter: (u64, u64),
    mut attempt_future: F,
) -> (Result<T, StepError>, u32)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    let Attempts {
        node,
        step,
        policy,
        before,
    } = who;
    let mut attempt = 1;
    loop {
        let number = before + attempt;
        let span = tracing::info_span!(
            "workflow.step",
            node,
            step,
            attempt = number,
            outcome = tracing::field::Empty,
        );
        log.emit(EventKind::StepStarted {
            node: node.into(),
            attempt: number,
        });
        let started = Instant::now();
        let scope = StepScope {
            log: Arc::clone(log),
            node,
        };
        let step = CURRENT_STEP.scope(
            scope,
            AssertUnwindSafe(attempt_future(attempt)).catch_unwind(),
        );
        let outcome = async {
            match policy.timeout {
                Some(limit) => tokio::time::timeout(limit, step)
                    .await
                    .unwrap_or_else(|_| Ok(Err(StepError::timed_out(limit)))),
                None => step.await,
            }
        }
        .instrument(span.clone())
        .await;
        let result =
            outcome.unwrap_or_else(|panic| Err(StepError::panicked(&panic_message(&*panic))));
        let retry =
            matches!(&result, Err(error) if error.is_retryable() && attempt <= policy.retries);
        span.record(
            "outcome",
            match &result {
                Ok(_) => "succeeded",
                Err(_) if retry => "retrying",
                Err(_) => "failed",
            },
        );
        let duration = started.elapsed();
        match result {
            Ok(value) => {
                log.emit(EventKind::StepSucceeded {
                    node: node.into(),
                    attempt: number,
                    duration,
                });
                return (Ok(value), attempt);
            }
            Err(error) if retry => {
                let delay = policy.jittered_delay_before(attempt + 1, draw(jitter, attempt));
                log.emit(EventKind::StepRetrying {
                    node: node.into(),
                    attempt: number,
                    error: error.to_string(),
                    delay,
                });
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) => {
                log.emit(EventKind::StepFailed {
                    node: node.into(),
                    attempt: number,
                    error: error.to_string(),
                    duration,
                });
                return (Err(error), attempt);
            }
        }
    }
}

async fn drive_state<W: CompiledStateGraph>(
    id: RunId,
    ctx: Arc<W::Context>,
    state: W::State,
    options: RunOptions,
    log: Arc<EventLog>,
    cancel: Canceller,
) -> Result<W::State, RunError> {
    let graph = W::graph();
    let span = run_span(graph, id);
    let result = async {
        log.emit(EventKind::RunStarted {
            workflow: graph.name.into(),
        });
        let mut deadline = Deadline::new(options.deadline);
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => Err(RunError::Cancelled),
            error = deadline.expired() => Err(error),
            result = walk::<W>(graph, &ctx, state, &options, &log) => result,
        };
        match &result {
            Ok(_) => log.emit(EventKind::RunFinished {
                duration: log.elapsed(),
            }),
            Err(RunError::Cancelled) => log.emit(EventKind::RunCancelled {
                duration: log.elapsed(),
            }),
            Err(error) => {
                let node = match error {
                    RunError::Step { node, .. } | RunError::StepLimit { node, .. } => *node,
                    _ => "",
                };
                let error = match error {
                    RunError::Step { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                log.emit(EventKind::RunFailed {
                    node: node.into(),
                    error,
                    duration: log.elapsed(),
                });
            }
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

/// Walks a state graph from its start to `END`, one node at a time.
async fn walk<W: CompiledStateGraph>(
    graph: &'static Graph,
    ctx: &Arc<W::Context>,
    mut state: W::State,
    options: &RunOptions,
    log: &Arc<EventLog>,
) -> Result<W::State, RunError> {
    let max_steps = options.max_steps;
    let seed = options.run_seed();
    let Some(def) = graph.state_graph() else {
        return Err(RunError::Internal(format!(
            "`{}` is not a state graph",
            graph.name
        )));
    };
    let mut rounds = vec![0_u32; graph.nodes.len()];
    let mut steps = 0_u32;
    let mut current = Target::Node(def.start);
    while let Target::Node(node) = current {
        let node_def = graph.node(node);
        if steps >= max_steps {
            return Err(RunError::StepLimit {
                limit: max_steps,
                node: node_def.name,
            });
        }
        steps += 1;
        // Each attempt works on its own copy of the state while a retry may follow, so a
        // failed attempt leaves nothing behind; the last attempt takes the state itself.
        let retries = node_def.policy.retries;
        let mut kept = Some(state);
        let jitter = (seed, (u64::from(steps) << 32) | node.0 as u64);
        let (result, _) = attempts(Attempts::of(node_def), log, jitter, |attempt| {
            let state = if attempt <= retries {
                kept.clone()
            } else {
                kept.take()
            };
            if let Some(state) = state {
                W::node(ctx, node, state)
            } else {
                let lost: StateFuture<W::State> = Box::pin(std::future::ready(Err(
                    StepError::msg("internal error: the state was used up"),
                )));
                lost
            }
        })
        .await;
        let taken;
        (state, taken) = result.map_err(|source| RunError::Step {
            node: node_def.name,
            step: node_def.step,
            source,
        })?;
        current = match def.next.get(node.0) {
            Some(Next::Goto { target }) => *target,
            Some(Next::Route { arms, bound }) => {
                rounds[node.0] += 1;
                let Some(arm) = arms.get(taken) else {
                    return Err(RunError::Internal(format!(
                        "no arm {taken} in `{}`",
                        node_def.name
                    )));
                };
                match bound {
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
                }
            }
            None => {
                return Err(RunError::Internal(format!(
                    "no way on from `{}`",
                    node_def.name
                )));
            }
        };
    }
    Ok(state)
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
