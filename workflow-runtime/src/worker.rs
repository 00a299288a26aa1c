//! Worker processes that share one database: any number of them, on any number of
//! machines, run the nodes of the runs submitted to it.
//!
//! A run submitted with [`Durable::submit`] is stored with its first ready nodes as tasks
//! in the store's queue ([`TaskQueue`], which `PostgresStore`
//! implements). A [`Worker`] claims ready tasks (`FOR UPDATE SKIP LOCKED`) under a lease
//! that it renews while the node runs, runs the node from its stored inputs, and records the
//! node's checkpoint and events in one transaction that also queues the nodes that became
//! ready, only if the task is still held under the same lease (a fenced write). A worker
//! that dies loses its leases when they expire, and another one takes its nodes over: a
//! completed node never runs again; a node in flight on the dead worker runs again
//! (at least once, as after a crash of a single process). When every node has completed,
//! one more task computes the run's output and ends it.
//!
//! Concurrency limits ([`Limit`]) hold across every worker: at most so many tasks of a
//! step, or of a workflow, in flight at once in the whole cluster.
//!
//! Both shapes run on workers: a dataflow run's ready nodes are claimed side by side, a
//! state graph's run is one task at a time (its next node), each from the state stored
//! after the one before.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use workflow::prelude::*;
//! use workflow::store::{Limit, PostgresStore};
//! use workflow::worker::Worker;
//!
//! #[step]
//! fn double(x: &u32) -> u32 {
//!     x * 2
//! }
//!
//! workflow! {
//!     Double(x: u32) -> u32 {
//!         let y = double(x);
//!         y
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), RunError> {
//! let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/test").await?;
//! // Any process submits runs...
//! let id = Durable::new(Double::new(), store.clone()).submit(21).await?;
//! // ...and any number of processes work on them.
//! Worker::new(store)
//!     .workflow(Double::new())
//!     .concurrency(8)
//!     .lease(Duration::from_secs(10))
//!     .limit(Limit::Step("double".into(), 4))
//!     .run_until(tokio::signal::ctrl_c())
//!     .await?;
//! # let _ = id;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinSet;

use crate::cache::NodeCache;
use crate::durable::{Durable, DynDurable};
use crate::events::{EventKind, EventLog};
use crate::graph::{Graph, NodeId, Target};
use crate::private::{Compiled, CompiledStateGraph, Persist, PersistNodes, Typed};

use crate::run::{self, NodeOutcome, RunError, RunOptions};
use crate::step::StepError;
use crate::store::{
    Candidate, Claim, FINISH, Interrupt, Limit, RunRecord, RunStatus, StateCheckpoint, Store,
    StoreError, Task, TaskQueue, TaskResult, Timestamp,
};

/// A claimed task, as a worker hands it to the workflow's generated code. Not a public
/// API: `workflow!` passes it through.
#[doc(hidden)]
pub struct WorkTask {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) claim: Claim,
}

/// The future [`Persist::work`] returns.
#[doc(hidden)]
pub type WorkFuture = Pin<Box<dyn Future<Output = Result<(), RunError>> + Send>>;

/// The store's queue, or the error for a store without one.
pub(crate) fn queue_of(store: &dyn Store) -> Result<&dyn TaskQueue, RunError> {
    store.queue().ok_or_else(|| {
        RunError::Unsupported(
            "this store has no work queue: workers share a PostgreSQL store (`PostgresStore`)"
                .to_owned(),
        )
    })
}

/// The first tasks of a new run: a state graph's start node; a dataflow graph's nodes
/// without inputs from other nodes (or, for a graph without nodes, the task that ends it).
pub(crate) fn first_tasks(graph: &'static Graph) -> Vec<Task> {
    if let Some(def) = graph.state_graph() {
        return vec![task_of(graph, def.start)];
    }
    let tasks: Vec<Task> = graph
        .nodes
        .iter()
        .filter(|node| node.deps.is_empty())
        .map(|node| Task {
            node: node.name.to_owned(),
            step: node.step.to_owned(),
        })
        .collect();
    if tasks.is_empty() {
        return vec![finish_task()];
    }
    tasks
}

fn task_of(graph: &'static Graph, node: NodeId) -> Task {
    let def = graph.node(node);
    Task {
        node: def.name.to_owned(),
        step: def.step.to_owned(),
    }
}

fn finish_task() -> Task {
    Task {
        node: FINISH.to_owned(),
        step: String::new(),
    }
}

/// The dependents of `node` as candidates: each becomes ready when its inputs exist.
fn candidates(graph: &'static Graph, nodes: impl IntoIterator<Item = NodeId>) -> Vec<Candidate> {
    nodes
        .into_iter()
        .map(|node| {
            let def = graph.node(node);
            let name = |id: &NodeId| graph.node(*id).name.to_owned();
            Candidate {
                task: Task {
                    node: def.name.to_owned(),
                    step: def.step.to_owned(),
                },
                needs: def
                    .deps
                    .iter()
                    .filter(|dep| !def.optional.contains(dep))
                    .map(name)
                    .collect(),
                reads_if_present: def.optional.iter().map(name).collect(),
            }
        })
        .collect()
}

/// The result of a task that ends the run with `error`.
fn failed(log: &EventLog, error: &RunError) -> TaskResult {
    run::emit_failure(log, error);
    TaskResult {
        end: Some((RunStatus::Failed, None, Some(error.to_string()))),
        events: log.since(0),
        ..TaskResult::default()
    }
}

/// How a workflow's input comes from JSON and its output goes to JSON.
#[doc(hidden)]
pub type Codec<I, O> = (
    fn(serde_json::Value) -> Result<I, StepError>,
    fn(&O) -> Result<serde_json::Value, StepError>,
);

/// How a state graph's state goes to JSON and comes back.
#[doc(hidden)]
pub type StateCodec<S> = (
    fn(&S) -> Result<serde_json::Value, StepError>,
    fn(serde_json::Value) -> Result<S, StepError>,
);

/// Runs a claimed task of a dataflow workflow and records its result (what
/// [`Persist::work`] does for one).
#[doc(hidden)]
pub fn work_dataflow<W: Compiled + PersistNodes>(
    ctx: Arc<W::Context>,
    options: RunOptions,
    task: WorkTask,
    (load_input, save_output): Codec<W::Input, W::Output>,
) -> WorkFuture {
    Box::pin(async move {
        let WorkTask { store, claim } = task;
        let queue = queue_of(&*store)?;
        let graph = W::graph();
        let node = graph.find(&claim.node);
        // A node needs only its inputs' checkpoints; the run's end needs every one.
        let needs = node.map(|node| {
            let deps = &graph.node(node).deps;
            deps.iter()
                .map(|&dep| graph.node(dep).name.to_owned())
                .collect()
        });
        let crate::store::TaskInputs {
            record,
            checkpoints,
            ..
        } = queue.inputs(claim.run, needs).await?;
        let log = task_log(&claim, &record);
        let input_json = record.input.clone();
        let result = match load_input(record.input) {
            Err(error) => failed(
                &log,
                &RunError::Decode {
                    what: format!("the stored input of run {}", claim.run),
                    error: error.to_string(),
                },
            ),
            Ok(input) => {
                let run = W::new_run(ctx, input);
                let mut restore_error = None;
                let finder = graph.finder(checkpoints.len());
                for checkpoint in checkpoints {
                    let Some(done) = finder.find(&checkpoint.node) else {
                        continue;
                    };
                    if let Err(error) = W::restore_node(&run, done, checkpoint.output) {
                        restore_error.get_or_insert(RunError::Decode {
                            what: format!("the checkpoint of node `{}`", checkpoint.node),
                            error: error.to_string(),
                        });
                    }
                }
                match (restore_error, node) {
                    (Some(error), _) => failed(&log, &error),
                    (None, None) if claim.node == FINISH => finish::<W>(run, &log, save_output),
                    (None, None) => failed(
                        &log,
                        &RunError::Internal(format!(
                            "the queue holds node `{}`, which is not a node of `{}`",
                            claim.node, graph.name
                        )),
                    ),
                    (None, Some(node)) => {
                        let cache = Arc::new(NodeCache {
                            store: Arc::clone(&store),
                            input: input_json,
                        });
                        let span = tracing::info_span!(
                            "workflow.task",
                            run = %claim.run,
                            workflow = graph.name,
                            node = graph.node(node).name,
                            claims = claim.claims,
                        );
                        let outcome = tracing::Instrument::instrument(
                            run::one_node(
                                graph,
                                Arc::new(Typed::<W>::persisted(Arc::new(run))),
                                node,
                                Arc::clone(&log),
                                options.run_seed(),
                                cache,
                            ),
                            span,
                        )
                        .await;
                        node_result(graph, node, outcome, &log)
                    }
                }
            }
        };
        queue.complete(&claim, result).await?;
        Ok(())
    })
}

/// A task's event log. Event times count from the run's creation, whichever process
/// records them; the store numbers the events.
fn task_log(claim: &Claim, record: &RunRecord) -> Arc<EventLog> {
    let age = Timestamp::now().0.saturating_sub(record.created_at.0);
    let offset = Duration::from_micros(u64::try_from(age).unwrap_or(0));
    Arc::new(EventLog::resumed(claim.run.to_string().into(), 0, offset))
}

/// Runs a claimed node of a state graph's run and records its result (what
/// [`Persist::work`] does for a state graph): from the state stored after the node before
/// it (or the run's input), the node's attempts and its route; the store then keeps the
/// state after it and queues the next node, or ends the run with the state as its output.
#[doc(hidden)]
pub fn work_state_graph<W: CompiledStateGraph>(
    ctx: Arc<W::Context>,
    options: RunOptions,
    task: WorkTask,
    (save, load): StateCodec<W::State>,
) -> WorkFuture {
    Box::pin(async move {
        let WorkTask { store, claim } = task;
        let queue = queue_of(&*store)?;
        let inputs = queue.inputs(claim.run, Some(Vec::new())).await?;
        let stored = store.state(claim.run).await?;
        let log = task_log(&claim, &inputs.record);
        let result = match state_task::<W>(
            &ctx,
            &options,
            (&store, &claim),
            (inputs, stored),
            &log,
            (save, load),
        )
        .await
        {
            Ok(result) => result,
            Err(RunError::Waiting { node, request }) => TaskResult {
                pause: Some(Interrupt {
                    node: node.to_owned(),
                    request,
                    created_at: Timestamp::now(),
                }),
                events: log.since(0),
                ..TaskResult::default()
            },
            Err(error) => failed(&log, &error),
        };
        queue.complete(&claim, result).await?;
        Ok(())
    })
}

/// The result of a state graph's task, or the error that ends its run (or pauses it).
async fn state_task<W: CompiledStateGraph>(
    ctx: &Arc<W::Context>,
    options: &RunOptions,
    (store, claim): (&Arc<dyn Store>, &Claim),
    (inputs, stored): (crate::store::TaskInputs, Option<StateCheckpoint>),
    log: &Arc<EventLog>,
    (save, load): StateCodec<W::State>,
) -> Result<TaskResult, RunError> {
    let graph = W::graph();
    if claim.node == FINISH {
        // The run went to its end from an answer: its output is the state stored then.
        let Some(stored) = stored else {
            return Err(RunError::Internal(format!(
                "run {} ended without a stored state",
                claim.run
            )));
        };
        log.emit(EventKind::RunFinished {
            duration: log.elapsed(),
        });
        return Ok(TaskResult {
            end: Some((RunStatus::Succeeded, Some(stored.state), None)),
            events: log.since(0),
            ..TaskResult::default()
        });
    }
    let (Some(def), Some(node)) = (graph.state_graph(), graph.find(&claim.node)) else {
        return Err(RunError::Internal(format!(
            "the queue holds node `{}`, which is not a node of the state graph `{}`",
            claim.node, graph.name
        )));
    };
    let decode = |what: String, error: StepError| RunError::Decode {
        what,
        error: error.to_string(),
    };
    // A run that keeps its history stores each node's change from the state before it.
    let (state, mut rounds, steps, before) = if let Some(checkpoint) = stored {
        let what = format!("the state stored after step {}", checkpoint.step);
        let before = inputs.history.then(|| checkpoint.state.clone());
        let state = load(checkpoint.state).map_err(|error| decode(what, error))?;
        (state, checkpoint.rounds, checkpoint.step, before)
    } else {
        let what = format!("the stored input of run {}", claim.run);
        let before = inputs.history.then(|| inputs.record.input.clone());
        let state = load(inputs.record.input).map_err(|error| decode(what, error))?;
        (state, Vec::new(), 0, before)
    };
    rounds.resize(graph.nodes.len(), 0);
    if steps >= options.step_limit() {
        return Err(RunError::StepLimit {
            limit: options.step_limit(),
            node: graph.node(node).name,
        });
    }
    let mut recorder = run::Recorder {
        store: Arc::clone(store),
        id: claim.run,
        saved: 0,
        last: None,
    };
    let mut durability = run::StateDurability {
        recorder: &mut recorder,
        save,
        load,
        graph_hash: graph.structural_hash().into(),
        before,
    };
    let writes = store.runs_statements().then(run::Writes::default);
    let stepped = run::state_step::<W>(
        (graph, def, node),
        ctx,
        state,
        (&mut rounds, steps + 1),
        (log, options.run_seed()),
        Some(&mut durability),
        writes.as_ref(),
    )
    .await?;
    let mut result = TaskResult {
        state: stepped.checkpoint,
        ..TaskResult::default()
    };
    match stepped.next {
        Target::Node(next) => {
            result.candidates = vec![Candidate {
                task: task_of(graph, next),
                needs: Vec::new(),
                reads_if_present: Vec::new(),
            }];
        }
        Target::End => {
            let output = save(&stepped.state).map_err(|error| RunError::Decode {
                what: "the run's output".to_owned(),
                error: error.to_string(),
            })?;
            log.emit(EventKind::RunFinished {
                duration: log.elapsed(),
            });
            result.end = Some((RunStatus::Succeeded, Some(output), None));
        }
    }
    result.events = log.since(0);
    Ok(result)
}

/// The nodes an answer to a pause at `node` may make ready: a dataflow pause's dependents,
/// a state graph's next node (none when the answer ends the run).
pub(crate) fn after_answer(
    graph: &'static Graph,
    node: NodeId,
    progress: &crate::store::Progress,
) -> Vec<Candidate> {
    match progress {
        crate::store::Progress::Nodes(_) => {
            candidates(graph, graph.node(node).dependents.iter().copied())
        }
        crate::store::Progress::State(state) => state
            .next
            .as_deref()
            .and_then(|next| graph.find(next))
            .map(|next| candidates(graph, [next]))
            .unwrap_or_default(),
    }
}

/// What the store records for a node's outcome.
fn node_result(
    graph: &'static Graph,
    node: NodeId,
    outcome: NodeOutcome,
    log: &EventLog,
) -> TaskResult {
    match outcome {
        NodeOutcome::Done(checkpoint) => TaskResult {
            checkpoint: Some(checkpoint),
            candidates: candidates(graph, graph.node(node).dependents.iter().copied()),
            events: log.since(0),
            ..TaskResult::default()
        },
        NodeOutcome::Skipped => {
            let mut skipped = vec![false; graph.nodes.len()];
            let mut readers = Vec::new();
            run::skip_downstream(graph, node, log, &mut skipped, |reader| {
                readers.push(reader);
            });
            readers.retain(|reader| !skipped[reader.0]);
            readers.dedup();
            TaskResult {
                skipped: (0..graph.nodes.len())
                    .filter(|&i| skipped[i])
                    .map(|i| graph.nodes[i].name.to_owned())
                    .collect(),
                candidates: candidates(graph, readers),
                events: log.since(0),
                ..TaskResult::default()
            }
        }
        NodeOutcome::Paused(request) => TaskResult {
            pause: Some(Interrupt {
                node: graph.node(node).name.to_owned(),
                request,
                created_at: Timestamp::now(),
            }),
            events: log.since(0),
            ..TaskResult::default()
        },
        NodeOutcome::Failed(error) => failed(log, &error),
    }
}

/// The task that ends a run whose nodes have all completed: its output.
fn finish<W: Compiled>(
    run: W::Run,
    log: &EventLog,
    save_output: fn(&W::Output) -> Result<serde_json::Value, StepError>,
) -> TaskResult {
    let Some(output) = W::output(run) else {
        return failed(
            log,
            &RunError::Internal("the run ended without its output".to_owned()),
        );
    };
    match save_output(&output) {
        Ok(json) => {
            log.emit(EventKind::RunFinished {
                duration: log.elapsed(),
            });
            TaskResult {
                end: Some((RunStatus::Succeeded, Some(json), None)),
                events: log.since(0),
                ..TaskResult::default()
            }
        }
        Err(error) => failed(
            log,
            &RunError::Decode {
                what: "the run's output".to_owned(),
                error: error.to_string(),
            },
        ),
    }
}

/// What a worker did, since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks whose results it recorded.
    pub completed: u64,
    /// Tasks it claimed that another worker had held before (whose lease had expired).
    pub taken_over: u64,
    /// Tasks whose lease it lost before recording them: their results were not recorded.
    pub lost: u64,
    /// Tasks that failed to record for another reason (the store failed, the run had
    /// ended): they stay queued, and run again once their lease expires.
    pub errors: u64,
    /// For every task it claimed for the first time: how long the task had waited from
    /// becoming ready to the claim (by the database's clock).
    pub waits: Vec<Duration>,
}

/// A worker: claims the ready nodes of submitted runs of its workflows from a shared store
/// and runs them. Start as many as needed, in as many processes and machines as needed.
/// See the [module](self) documentation.
pub struct Worker {
    store: Arc<dyn Store>,
    workflows: Vec<Arc<dyn DynDurable>>,
    name: String,
    concurrency: usize,
    lease: Duration,
    renew_every: Option<Duration>,
    poll_every: Duration,
    limits: Vec<Limit>,
    stats: Arc<Mutex<WorkerStats>>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker on `store` (it must have a work queue: a
    /// `PostgresStore`), with no workflows yet.
    pub fn new(store: impl Store) -> Self {
        Self::with_shared_store(Arc::new(store))
    }

    /// A worker on a store the program shares with other parts of it.
    pub fn with_shared_store(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            workflows: Vec::new(),
            name: format!("{}/{}", hostname(), std::process::id()),
            concurrency: 16,
            lease: Duration::from_secs(30),
            renew_every: None,
            poll_every: Duration::from_millis(100),
            limits: Vec::new(),
            stats: Arc::default(),
        }
    }

    /// Runs the nodes of `workflow`'s runs (with its context and run options), on this
    /// worker's store.
    #[must_use]
    pub fn workflow<W: Persist<()>>(mut self, workflow: W) -> Self {
        let durable = Durable::with_shared_store(workflow, Arc::clone(&self.store));
        self.workflows.push(Arc::new(durable));
        self
    }

    /// The worker's name in the queue (who holds a task): `host/pid` unless set.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How many nodes it runs at once, at most (16 unless set; at least 1).
    #[must_use]
    pub fn concurrency(mut self, tasks: usize) -> Self {
        self.concurrency = tasks.max(1);
        self
    }

    /// How long a claim holds a task without being renewed (30 s unless set): when a
    /// worker dies, its nodes run elsewhere this long after its last renewal.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often it renews the leases of the nodes it runs (a third of the lease unless
    /// set).
    #[must_use]
    pub fn renew_every(mut self, every: Duration) -> Self {
        self.renew_every = Some(every);
        self
    }

    /// How long it waits before looking again when the queue had nothing for it (100 ms
    /// unless set). It looks again at once whenever one of its tasks ends.
    #[must_use]
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// A concurrency limit for the whole cluster, written to the store when the worker
    /// starts (with the others set on this worker, replacing those stored: give every
    /// worker the same ones).
    #[must_use]
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limits.push(limit);
        self
    }

    /// What the worker has done so far; the handle stays valid while and after it runs.
    pub fn stats(&self) -> WorkerStatsHandle {
        WorkerStatsHandle(Arc::clone(&self.stats))
    }

    /// Works until `shutdown` completes, then claims nothing more and returns once the
    /// nodes it runs have ended and been recorded. A store that fails is retried after
    /// the poll interval; the worker does not stop for it.
    ///
    /// # Errors
    ///
    /// [`RunError::Unsupported`] when the store has no work queue; [`RunError::Store`]
    /// when the limits cannot be written.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = impl Sized>,
    ) -> Result<(), RunError> {
        let queue = queue_of(&*self.store)?;
        let (by_name, names) = self.workflows_by_name();
        if !self.limits.is_empty() {
            queue.set_limits(self.limits.clone()).await?;
        }
        let renew_every = self.renew_every.unwrap_or(self.lease / 3);
        let mut renew = tokio::time::interval(renew_every);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tasks: JoinSet<(u64, Result<(), RunError>)> = JoinSet::new();
        let mut held: HashMap<u64, tokio::task::AbortHandle> = HashMap::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut stopping = false;
        let wakeups = queue.wakeups();
        let woken = || async {
            match &wakeups {
                Some(wake) => wake.notified().await,
                None => std::future::pending().await,
            }
        };
        loop {
            let room = self.concurrency - tasks.len();
            let mut drained = true;
            if room > 0 && !stopping {
                let running: Vec<u64> = held.keys().copied().collect();
                let me = (self.name.as_str(), running.as_slice());
                match queue.claim(&names, me, room, self.lease).await {
                    Ok(claims) => {
                        let mut started = 0;
                        for claim in claims {
                            self.note_claim(&claim);
                            let Some(durable) = by_name.get(claim.workflow.as_str()) else {
                                continue;
                            };
                            started += 1;
                            let durable = Arc::clone(durable);
                            let lease = claim.lease;
                            let handle =
                                tasks.spawn(async move { (lease, durable.work(claim).await) });
                            held.insert(lease, handle);
                        }
                        drained = started < room;
                    }
                    Err(error) => {
                        tracing::warn!(worker = %self.name, %error, "cannot claim tasks");
                    }
                }
            }
            if stopping && tasks.is_empty() {
                return Ok(());
            }
            tokio::select! {
                _ = &mut shutdown, if !stopping => stopping = true,
                Some(joined) = tasks.join_next() => {
                    // Every task that has ended by now, before claiming again: one claim
                    // for all the room they leave.
                    let mut next = Some(joined);
                    while let Some(joined) = next {
                        self.note_end(joined, &mut held);
                        next = tasks.try_join_next();
                    }
                }
                _ = renew.tick(), if !held.is_empty() => {
                    let leases: Vec<u64> = held.keys().copied().collect();
                    match queue.renew(&leases, self.lease).await {
                        Ok(kept) => {
                            // A task whose lease is gone runs elsewhere now: stop it here.
                            // (One that has just recorded its result is gone from the
                            // queue too; it is not stopped, and counts as completed.)
                            for lease in leases.into_iter().filter(|l| !kept.contains(l)) {
                                if let Some(handle) = held.remove(&lease)
                                    && !handle.is_finished()
                                {
                                    handle.abort();
                                }
                            }
                        }
                        Err(error) => {
                            tracing::warn!(worker = %self.name, %error, "cannot renew leases");
                        }
                    }
                }
                () = tokio::time::sleep(self.poll_every), if drained && room > 0 && !stopping => {}
                () = woken(), if drained && room > 0 && !stopping => {}
                else => {}
            }
        }
    }

    /// The workflows by name, and their names and structural hashes for the queue.
    #[allow(clippy::type_complexity)] // two views of one list
    fn workflows_by_name(
        &self,
    ) -> (
        HashMap<&'static str, Arc<dyn DynDurable>>,
        Vec<(String, String)>,
    ) {
        let by_name = self
            .workflows
            .iter()
            .map(|w| (w.graph().name, Arc::clone(w)))
            .collect();
        let names = self
            .workflows
            .iter()
            .map(|w| (w.graph().name.to_owned(), w.graph().structural_hash()))
            .collect();
        (by_name, names)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WorkerStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note_claim(&self, claim: &Claim) {
        let mut stats = self.lock();
        if claim.claims > 1 {
            stats.taken_over += 1;
        } else {
            stats.waits.push(claim.waited);
        }
    }

    fn note_end(
        &self,
        joined: Result<(u64, Result<(), RunError>), tokio::task::JoinError>,
        held: &mut HashMap<u64, tokio::task::AbortHandle>,
    ) {
        match joined {
            Ok((lease, result)) => {
                held.remove(&lease);
                self.note_result(result);
            }
            // Stopped because its lease was lost (see the renewal).
            Err(error) if error.is_cancelled() => self.lock().lost += 1,
            Err(error) => {
                tracing::error!(worker = %self.name, %error, "a task panicked");
                self.lock().errors += 1;
            }
        }
    }

    fn note_result(&self, result: Result<(), RunError>) {
        let mut stats = self.lock();
        match result {
            Ok(()) => stats.completed += 1,
            Err(RunError::Store(StoreError::LeaseLost { run, node })) => {
                tracing::warn!(worker = %self.name, %run, node, "lease lost: result dropped");
                stats.lost += 1;
            }
            Err(error) => {
                tracing::warn!(worker = %self.name, %error, "task not recorded");
                stats.errors += 1;
            }
        }
    }
}

/// Reads a [`Worker`]'s [`WorkerStats`].
#[derive(Clone, Debug)]
pub struct WorkerStatsHandle(Arc<Mutex<WorkerStats>>);

impl WorkerStatsHandle {
    /// The figures so far.
    pub fn get(&self) -> WorkerStats {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// This machine's name, for worker names.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".to_owned())
}

/// A worker's command-line arguments, for programs that join the pool from the command
/// line: flatten them into a clap subcommand (`Worker(WorkerArgs)`), then call
/// [`WorkerArgs::run`].
///
/// ```text
/// worker [--concurrency 16] [--lease-ms 30000] [--poll-ms 100] [--name NAME]
///        [--limit STEP=N]... [--limit workflow:NAME=N]... [--stats]
/// ```
#[cfg(feature = "cli")]
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct WorkerArgs {
    /// How many nodes this worker runs at once, at most.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// How long a claim holds a node without being renewed, in milliseconds: when a
    /// worker dies, its nodes run elsewhere this long after.
    #[arg(long, default_value_t = 30_000)]
    pub lease_ms: u64,
    /// How long to wait before looking again when nothing is ready, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub poll_ms: u64,
    /// The worker's name in the queue (`host/pid` by default).
    #[arg(long)]
    pub name: Option<String>,
    /// A limit across all workers: `STEP=N` runs at most N nodes of the step at once,
    /// `workflow:NAME=N` at most N nodes of the workflow's runs.
    #[arg(long = "limit", value_name = "STEP=N", value_parser = parse_limit)]
    pub limits: Vec<Limit>,
    /// Print what the worker did as JSON on stdout when it stops.
    #[arg(long)]
    pub stats: bool,
}

/// Parses `STEP=N` or `workflow:NAME=N`.
#[cfg(feature = "cli")]
fn parse_limit(text: &str) -> Result<Limit, String> {
    let (name, max) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("`{text}` is not STEP=N or workflow:NAME=N"))?;
    let max: u32 = max
        .parse()
        .map_err(|_| format!("`{max}` is not a number of nodes"))?;
    match name.strip_prefix("workflow:") {
        Some(workflow) => Ok(Limit::Workflow(workflow.to_owned(), max)),
        None => Ok(Limit::Step(name.to_owned(), max)),
    }
}

#[cfg(feature = "cli")]
impl WorkerArgs {
    /// The worker with these settings.
    #[must_use]
    pub fn apply(&self, mut worker: Worker) -> Worker {
        worker = worker
            .concurrency(self.concurrency)
            .lease(Duration::from_millis(self.lease_ms.max(1)))
            .poll_every(Duration::from_millis(self.poll_ms));
        if let Some(name) = &self.name {
            worker = worker.name(name.clone());
        }
        for limit in &self.limits {
            worker = worker.limit(limit.clone());
        }
        worker
    }

    /// Runs `worker` with these settings until Ctrl-C or SIGTERM, then lets the nodes in
    /// flight end; says so on `stderr`, and prints the figures if asked.
    ///
    /// # Errors
    ///
    /// As [`Worker::run_until`].
    pub async fn run(self, worker: Worker) -> Result<(), RunError> {
        let worker = self.apply(worker);
        let stats = worker.stats();
        let names: Vec<&str> = worker.workflows.iter().map(|w| w.graph().name).collect();
        eprintln!(
            "worker {} runs {} (Ctrl-C to stop)",
            worker.name,
            names.join(", ")
        );
        worker.run_until(stop_signal()).await?;
        let stats = stats.get();
        eprintln!(
            "worker stopped: {} tasks completed, {} taken over, {} lost",
            stats.completed, stats.taken_over, stats.lost
        );
        if self.stats {
            let waits: Vec<u128> = stats.waits.iter().map(Duration::as_micros).collect();
            let json = serde_json::json!({
                "completed": stats.completed,
                "taken_over": stats.taken_over,
                "lost": stats.lost,
                "errors": stats.errors,
                "waits_us": waits,
            });
            println!("{json}");
        }
        Ok(())
    }
}

/// Ctrl-C, or on Unix SIGTERM too.
#[cfg(feature = "cli")]
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
