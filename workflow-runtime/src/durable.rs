//! Durable runs: every completed node is checkpointed in a [`Store`], so a run survives the
//! process that runs it.
//!
//! [`Durable`] pairs a workflow with a store. A run it starts is recorded before its first
//! step; each node's output is stored together with its `step_succeeded` event, in one
//! transaction; after a crash, [`Durable::resume`] loads the completed nodes instead of
//! running them again and runs the rest. Nodes that were in flight run again: execution is
//! at-least-once, and [`idempotency_key`](crate::idempotency_key) gives each step a key to
//! hand to outside systems that deduplicate.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::cache::NodeCache;
use crate::events::EventKind;
use crate::events::EventLog;
use crate::graph::Target;
use crate::private::{Compiled, CompiledStateGraph, Persist, PersistNodes, Typed};
use crate::run::{
    self, Durability, Recorder, RunError, RunHandle, RunId, RunOptions, StateDurability, Walk,
};
use crate::step::StepError;
use crate::store::{Checkpoint, Progress, RunRecord, RunStatus, StateCheckpoint, Store, Timestamp};

/// A workflow whose runs are kept in a [`Store`]: they survive a crash of the process and
/// resume where they stopped.
///
/// Every input of the workflow (or a state graph's state) must implement
/// `serde::Serialize` and `serde::Deserialize`, as every step output does: a durable run
/// stores them.
///
/// # Examples
///
/// ```
/// use workflow::prelude::*;
/// use workflow::store::{MemoryStore, RunStatus, Store};
///
/// #[step]
/// fn double(x: &u32) -> u32 {
///     x * 2
/// }
///
/// #[step]
/// fn add_one(x: &u32) -> u32 {
///     x + 1
/// }
///
/// workflow! {
///     /// Doubles, then adds one.
///     pub Arith(x: u32) -> u32 {
///         let doubled = double(x);
///         add_one(doubled)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RunError> {
/// let durable = Durable::new(Arith::new(), MemoryStore::new());
/// let handle = durable.start(20).await?;
/// let id = handle.id();
/// assert_eq!(handle.await?, 41);
///
/// let record = durable.store().run(id).await?;
/// assert_eq!(record.status, RunStatus::Succeeded);
/// assert_eq!(record.output, Some(serde_json::json!(41)));
/// assert_eq!(durable.store().checkpoints(id).await?.len(), 2);
/// # Ok(())
/// # }
/// ```
pub struct Durable<W> {
    workflow: W,
    store: Arc<dyn Store>,
    /// The workflow graph's structural hash, computed once: every run stores it, every
    /// resume checks it.
    graph_hash: Arc<str>,
    /// Whether runs of a state graph keep their history (see [`Durable::keep_history`]).
    history: bool,
}

impl<W> Clone for Durable<W>
where
    W: Clone,
{
    fn clone(&self) -> Self {
        Self {
            workflow: self.workflow.clone(),
            store: Arc::clone(&self.store),
            graph_hash: Arc::clone(&self.graph_hash),
            history: self.history,
        }
    }
}

impl<W> fmt::Debug for Durable<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Durable").finish_non_exhaustive()
    }
}

impl<W: Persist<()>> Durable<W> {
    /// Pairs `workflow` (its context and options) with the store its runs are kept in.
    pub fn new(workflow: W, store: impl Store) -> Self {
        Self::with_shared_store(workflow, Arc::new(store))
    }

    /// Pairs `workflow` with a store shared with other workflows or servers.
    pub fn with_shared_store(workflow: W, store: Arc<dyn Store>) -> Self {
        Self {
            workflow,
            store,
            graph_hash: W::graph().structural_hash().into(),
            history: false,
        }
    }

    /// Makes runs of a state graph keep their history: with each node's state checkpoint,
    /// the store appends the change the node made (a JSON Patch from the state before it),
    /// so that [`Durable::history`] can replay every state the run went through.
    ///
    /// Off by default: the latest state is all a run needs to resume, and it keeps the
    /// storage of a run the size of its state. With history, storage grows by the size of
    /// each change (a node that appends a kilobyte adds about a kilobyte), and each node
    /// costs a diff of the state.
    #[must_use]
    pub fn keep_history(mut self) -> Self {
        self.history = true;
        self
    }

    /// The store the runs are kept in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The workflow.
    pub fn workflow(&self) -> &W {
        &self.workflow
    }

    /// Records a new run and starts it in a new tokio task. The run is stored before this
    /// returns, so its id (on the handle) can be printed and resumed from right away.
    ///
    /// # Errors
    ///
    /// When the input does not serialize, or the store cannot record the run.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn start(&self, input: W::Input) -> Result<RunHandle<W::Output>, RunError> {
        let record = self.new_record(&input)?;
        let (id, json) = (record.id, record.input.clone());
        self.store
            .create_run(record)
            .await
            .map_err(RunError::Store)?;
        Ok(self.spawn(id, (0, std::time::Duration::ZERO), json, Origin::New(input)))
    }

    /// Submits a new run to the workers that share this store (see [`crate::worker`]): the
    /// run is recorded with its first ready nodes queued, in one transaction, and any
    /// [`Worker`](crate::worker::Worker) of this workflow runs it. Returns its id; follow
    /// it through the store ([`Store::run`], [`Store::events`]).
    ///
    /// # Errors
    ///
    /// [`RunError::Unsupported`] when the store has no work queue; [`RunError::Decode`]
    /// when the input does not serialize;
    /// [`RunError::Store`] when the store fails.
    pub async fn submit(&self, input: W::Input) -> Result<RunId, RunError> {
        let queue = crate::worker::queue_of(&*self.store)?;
        let graph = W::graph();
        let record = self.new_record(&input)?;
        let id = record.id;
        let log = EventLog::new(id.to_string().into());
        log.emit(crate::events::EventKind::RunStarted {
            workflow: graph.name.into(),
        });
        queue
            .submit(
                record,
                crate::worker::first_tasks(graph),
                log.since(0),
                self.history,
            )
            .await?;
        Ok(id)
    }

    /// The record of a new run of `input`, under a new id.
    fn new_record(&self, input: &W::Input) -> Result<RunRecord, RunError> {
        let json = W::save_input(input).map_err(|error| RunError::Decode {
            what: "the run's input".to_owned(),
            error: error.to_string(),
        })?;
        Ok(RunRecord::new(
            RunId::new(),
            W::graph().name,
            &*self.graph_hash,
            json,
        ))
    }

    /// Starts a run and waits for its output.
    ///
    /// # Errors
    ///
    /// As [`Durable::start`], and the run's own error.
    pub async fn run(&self, input: W::Input) -> Result<W::Output, RunError> {
        self.start(input).await?.await
    }

    /// Takes up a stored run that did not end (its process was killed, or stopped): its
    /// completed nodes are loaded from their checkpoints, the nodes that were in flight run
    /// again, and the run goes on to its end. Its events continue the stored log.
    ///
    /// # Errors
    ///
    /// [`RunError::NotResumable`] for an unknown run, a run of another workflow, a run
    /// that has ended, or one that waits for an answer (answer it instead);
    /// [`RunError::GraphChanged`] when the workflow's graph changed since the run started;
    /// [`RunError::Decode`] when a stored value no longer decodes; [`RunError::Store`]
    /// when the store fails.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn resume(&self, id: RunId) -> Result<RunHandle<W::Output>, RunError> {
        let record = self.stored_run(id).await?;
        match record.status {
            RunStatus::Running => {
                if let Some(queue) = self.store.queue()
                    && queue.queued(id).await? > 0
                {
                    return Err(RunError::NotResumable {
                        run: id,
                        reason: "workers run it (its nodes are queued); resume is for a run whose process died"
                            .to_owned(),
                    });
                }
            }
            RunStatus::Waiting => {
                return Err(RunError::NotResumable {
                    run: id,
                    reason: "it waits for an answer to its pause; answer it to go on".to_owned(),
                });
            }
            status => {
                return Err(RunError::NotResumable {
                    run: id,
                    reason: format!("it has ended ({status})"),
                });
            }
        }
        let json = record.input;
        let input = W::load_input(json.clone()).map_err(|error| RunError::Decode {
            what: format!("the stored input of run {id}"),
            error: error.to_string(),
        })?;
        let store_error = RunError::Store;
        let checkpoints = self.store.checkpoints(id).await.map_err(store_error)?;
        let state = self.store.state(id).await.map_err(store_error)?;
        let (next_seq, offset) = self.log_end(id).await?;
        Ok(self.spawn(
            id,
            (next_seq, offset),
            json,
            Origin::Resume {
                input,
                checkpoints,
                state,
            },
        ))
    }

    /// Answers the pause a run waits at, with a JSON value of the pause's reply type, and
    /// resumes the run: the answer is the pause node's output (checked against its type
    /// first), recorded together with the run's return to `running`; nothing before the
    /// pause runs again.
    ///
    /// # Errors
    ///
    /// [`RunError::Decode`] when the answer does not have the pause's reply type (the run
    /// keeps waiting, nothing changed); [`RunError::NotResumable`] when the run does not
    /// wait for an answer; the errors of [`Durable::resume`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn answer_json(
        &self,
        id: RunId,
        answer: serde_json::Value,
    ) -> Result<RunHandle<W::Output>, RunError> {
        let record = self.stored_run(id).await?;
        if record.status != RunStatus::Waiting {
            return Err(RunError::NotResumable {
                run: id,
                reason: format!("it does not wait for an answer (it is {})", record.status),
            });
        }
        let Some(interrupt) = self.store.interrupt(id).await? else {
            return Err(RunError::NotResumable {
                run: id,
                reason: "it has no pending pause".to_owned(),
            });
        };
        let Some(node) = W::graph().find(&interrupt.node) else {
            return Err(RunError::Internal(format!(
                "run {id} waits at `{}`, which is not a node of `{}`",
                interrupt.node,
                W::graph().name
            )));
        };
        let input = W::load_input(record.input).map_err(|error| RunError::Decode {
            what: format!("the stored input of run {id}"),
            error: error.to_string(),
        })?;
        let state = self.store.state(id).await?;
        let (next_seq, offset) = self.log_end(id).await?;
        let log = Arc::new(EventLog::resumed(id.to_string().into(), next_seq, offset));
        let on_workers = match self.store.queue() {
            Some(queue) => queue.on_workers(id).await?,
            None => false,
        };
        let progress = W::answer(AnswerArgs {
            ctx: Arc::clone(self.workflow.context()),
            input,
            state,
            node,
            answer,
            log: Arc::clone(&log),
            history: self.history,
        })
        .await?;
        if on_workers && let Some(queue) = self.store.queue() {
            // The workers go on with it, from the nodes the answer makes ready.
            let next = crate::worker::after_answer(W::graph(), node, &progress);
            queue
                .answer_queued(id, (interrupt.node, progress), log.since(next_seq), next)
                .await?;
            return Ok(self.follow_from(id, next_seq));
        }
        self.store
            .answer(id, interrupt.node, progress, log.since(next_seq))
            .await?;
        self.resume(id).await
    }

    /// A handle on a run that another process drives (the workers, say): its events are
    /// read from the store as they are stored, from the first of the run's current part
    /// (as [`RunHandle::events`] gives a resumed run's), and it ends with the run, its
    /// output decoded from the store. Cancelling it records the run as cancelled.
    ///
    /// # Errors
    ///
    /// [`RunError::Store`] when the store cannot read the run's log.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn follow(&self, id: RunId) -> Result<RunHandle<W::Output>, RunError> {
        let events = self.store.events(id, 0).await?;
        // A part ends with a terminal event (a pause's `run_waiting`); the current part is
        // the one after the last that ended, or the last one when the run has ended.
        let ends: Vec<u64> = events
            .iter()
            .filter(|event| event.kind.is_terminal())
            .map(|event| event.seq)
            .collect();
        let last_is_end = events
            .last()
            .is_some_and(|event| ends.last() == Some(&event.seq));
        let ended_before = if last_is_end {
            ends.iter().rev().nth(1)
        } else {
            ends.last()
        };
        Ok(self.follow_from(id, ended_before.map_or(0, |&seq| seq + 1)))
    }

    /// [`Durable::follow`], from event `from` on.
    fn follow_from(&self, id: RunId, from: u64) -> RunHandle<W::Output> {
        let log = Arc::new(EventLog::resumed(
            id.to_string().into(),
            from,
            std::time::Duration::ZERO,
        ));
        let store = Arc::clone(&self.store);
        run::spawn_with(id, log, move |id, log, cancel| {
            follow_run::<W>(store, id, log, cancel)
        })
    }

    /// Answers the pause a run waits at with a typed reply: `S` is the pause step (its
    /// companion type, as `#[step]` generates it), so the reply's type is checked by the
    /// compiler. See [`Durable::answer_json`].
    ///
    /// # Errors
    ///
    /// As [`Durable::answer_json`]; also [`RunError::NotResumable`] when the run waits at
    /// a pause of another step.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn answer<S: crate::step::Step>(
        &self,
        id: RunId,
        reply: S::Output,
    ) -> Result<RunHandle<W::Output>, RunError>
    where
        S::Output: serde::Serialize,
    {
        if let Some(interrupt) = self.store.interrupt(id).await?
            && let Some(node) = W::graph().find(&interrupt.node)
            && W::graph().node(node).step != S::NAME
        {
            return Err(RunError::NotResumable {
                run: id,
                reason: format!(
                    "it waits at `{}` (step `{}`), not at a `{}` step",
                    interrupt.node,
                    W::graph().node(node).step,
                    S::NAME
                ),
            });
        }
        let answer = crate::private::to_json(&reply).map_err(|error| RunError::Decode {
            what: "the answer".to_owned(),
            error: error.to_string(),
        })?;
        self.answer_json(id, answer).await
    }

    /// Every state a run of a state graph went through after each of its nodes, replayed
    /// from the history it kept (see [`Durable::keep_history`]): the run's input with each
    /// stored change applied in turn. Empty for a run that kept no history (and for a
    /// dataflow workflow, whose checkpoints are its history).
    ///
    /// # Errors
    ///
    /// [`RunError::NotResumable`] for an unknown run or a run of another workflow;
    /// [`RunError::Decode`] when a stored change does not apply or a state no longer
    /// decodes; [`RunError::Store`] when the store fails.
    pub async fn history(&self, id: RunId) -> Result<Vec<HistoryStep<W::Input>>, RunError> {
        let record = self.record_of_this_workflow(id).await?;
        let changes = self.store.history(id).await?;
        let mut state = record.input;
        let mut steps = Vec::with_capacity(changes.len());
        for change in changes {
            let what = || format!("the change of step {} (`{}`)", change.step, change.node);
            let patch: json_patch::Patch =
                serde_json::from_value(change.patch).map_err(|error| RunError::Decode {
                    what: what(),
                    error: error.to_string(),
                })?;
            json_patch::patch(&mut state, &patch).map_err(|error| RunError::Decode {
                what: what(),
                error: error.to_string(),
            })?;
            let typed = W::load_input(state.clone()).map_err(|error| RunError::Decode {
                what: format!("the state after step {}", change.step),
                error: error.to_string(),
            })?;
            steps.push(HistoryStep {
                step: change.step,
                node: change.node,
                state: typed,
            });
        }
        Ok(steps)
    }

    /// The stored record of a run, checked to be a run of this workflow.
    async fn record_of_this_workflow(&self, id: RunId) -> Result<RunRecord, RunError> {
        let graph = W::graph();
        let record = self.store.run(id).await.map_err(|error| match error {
            crate::store::StoreError::UnknownRun(_) => RunError::NotResumable {
                run: id,
                reason: "no run has this id".to_owned(),
            },
            other => RunError::Store(other),
        })?;
        if record.workflow != graph.name {
            return Err(RunError::NotResumable {
                run: id,
                reason: format!(
                    "it is a run of `{}`, not of `{}`",
                    record.workflow, graph.name
                ),
            });
        }
        Ok(record)
    }

    /// The stored record of a run of this workflow, checked against this program's graph.
    async fn stored_run(&self, id: RunId) -> Result<RunRecord, RunError> {
        let record = self.record_of_this_workflow(id).await?;
        if *record.graph_hash != *self.graph_hash {
            return Err(RunError::GraphChanged {
                run: id,
                workflow: record.workflow,
                stored: record.graph_hash,
                current: self.graph_hash.to_string(),
            });
        }
        Ok(record)
    }

    /// The sequence number and time at which a stored run's log ends.
    async fn log_end(&self, id: RunId) -> Result<(u64, std::time::Duration), RunError> {
        let events = self.store.events(id, 0).await.map_err(RunError::Store)?;
        Ok(events
            .last()
            .map_or((0, std::time::Duration::ZERO), |last| {
                (last.seq + 1, last.at)
            }))
    }

    /// Spawns the task that drives a run; its log starts at `(first_seq, offset)`.
    fn spawn(
        &self,
        id: RunId,
        (first_seq, offset): (u64, std::time::Duration),
        input: serde_json::Value,
        origin: Origin<W::Input>,
    ) -> RunHandle<W::Output> {
        let log = Arc::new(EventLog::resumed(id.to_string().into(), first_seq, offset));
        let ctx = Arc::clone(self.workflow.context());
        let options = self.workflow.options().clone();
        let store = Arc::clone(&self.store);
        let graph_hash = Arc::clone(&self.graph_hash);
        let history = self.history;
        run::spawn_with(id, log, move |id, log, cancel| {
            W::drive(
                ctx,
                options,
                DurableRun {
                    id,
                    store,
                    log,
                    cancel,
                    origin,
                    input,
                    graph_hash,
                    history,
                },
            )
        })
    }
}

/// How often [`Durable::follow`] reads the store.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Copies a run's stored events into `log` until the run ends (or waits), then gives its
/// output or error as the store has them.
async fn follow_run<W: Persist<()>>(
    store: Arc<dyn Store>,
    id: RunId,
    log: Arc<EventLog>,
    cancel: run::Canceller,
) -> Result<W::Output, RunError> {
    loop {
        // The status first: a run's end and its last events are stored together, so the
        // events read after it include them.
        let record = store.run(id).await?;
        for event in store.events(id, log.next_seq()).await? {
            log.emit_at(event.at, event.kind);
        }
        match record.status {
            RunStatus::Running => {}
            RunStatus::Succeeded => {
                let output = record.output.unwrap_or(serde_json::Value::Null);
                return W::load_output(output).map_err(|error| RunError::Decode {
                    what: format!("the stored output of run {id}"),
                    error: error.to_string(),
                });
            }
            RunStatus::Cancelled => return Err(RunError::Cancelled),
            RunStatus::Failed => {
                return Err(RunError::Failed {
                    run: id,
                    error: record.error.unwrap_or_default(),
                });
            }
            RunStatus::Waiting => {
                let interrupt = store.interrupt(id).await?;
                let graph = W::graph();
                let at = interrupt.as_ref().and_then(|i| graph.find(&i.node));
                return Err(match (interrupt, at) {
                    (Some(interrupt), Some(node)) => RunError::Waiting {
                        node: graph.node(node).name,
                        request: interrupt.request,
                    },
                    _ => RunError::Internal(format!("run {id} waits, but not at a known pause")),
                });
            }
        }
        tokio::select! {
            () = cancel.cancelled() => {
                if cancel_stored(&*store, id, &log).await? {
                    return Err(RunError::Cancelled);
                }
            }
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
    }
}

/// Records a followed run as cancelled, its `run_cancelled` event after the stored log
/// (read again if its drivers stored more meanwhile). `false` when the run had ended
/// already: it stays as it ended.
async fn cancel_stored(store: &dyn Store, id: RunId, log: &EventLog) -> Result<bool, RunError> {
    loop {
        let record = store.run(id).await?;
        if record.status.is_final() {
            return Ok(false);
        }
        for event in store.events(id, log.next_seq()).await? {
            log.emit_at(event.at, event.kind);
        }
        let age = Timestamp::now().0.saturating_sub(record.created_at.0);
        let at = std::time::Duration::from_micros(u64::try_from(age).unwrap_or(0));
        let kind = EventKind::RunCancelled { duration: at };
        let event = crate::events::Event {
            seq: log.next_seq(),
            at,
            kind: kind.clone(),
        };
        match store
            .finish_run(id, RunStatus::Cancelled, None, None, vec![event])
            .await
        {
            Ok(()) => {
                log.emit_at(at, kind);
                return Ok(true);
            }
            // Its drivers stored more events meanwhile: read them, and try again.
            Err(crate::store::StoreError::OutOfSequence { .. }) => {}
            Err(crate::store::StoreError::Ended(_)) => return Ok(false),
            Err(error) => return Err(RunError::Store(error)),
        }
    }
}

/// One step of a state graph's run, replayed from its history ([`Durable::history`]).
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryStep<S> {
    /// How many nodes had completed with this one: 1 for the first.
    pub step: u32,
    /// The node.
    pub node: String,
    /// The state after it.
    pub state: S,
}

/// A durable workflow with its types erased, so that programs (a command line, a server)
/// can keep workflows of different types side by side and drive them with JSON.
pub trait DynDurable: Send + Sync {
    /// The workflow's graph (its name is the workflow's name).
    fn graph(&self) -> &'static crate::graph::Graph;

    /// The store its runs are kept in.
    fn store(&self) -> &Arc<dyn Store>;

    /// Starts a run from a JSON input and returns its id as soon as it is stored; the run
    /// goes on in a new task.
    fn start_json(&self, input: serde_json::Value) -> BoxFuture<'_, Result<RunId, RunError>>;

    /// Resumes a stored run (see [`Durable::resume`]) and waits for its output, as JSON.
    fn resume_json(&self, id: RunId) -> BoxFuture<'_, Result<serde_json::Value, RunError>>;

    /// Starts a run from a JSON input (see [`Durable::start`]) and returns its handle, whose
    /// output is JSON.
    fn start_run(&self, input: serde_json::Value) -> BoxFuture<'_, Result<JsonRun, RunError>>;

    /// Resumes a stored run (see [`Durable::resume`]) and returns its handle.
    fn resume_run(&self, id: RunId) -> BoxFuture<'_, Result<JsonRun, RunError>>;

    /// Answers a run's pause with a JSON value (see [`Durable::answer_json`]) and returns
    /// the handle of the run it resumes.
    fn answer_run(
        &self,
        id: RunId,
        answer: serde_json::Value,
    ) -> BoxFuture<'_, Result<JsonRun, RunError>>;

    /// Submits a run from a JSON input to the workers (see [`Durable::submit`]).
    fn submit_json(&self, input: serde_json::Value) -> BoxFuture<'_, Result<RunId, RunError>>;

    /// Runs a task a worker claimed. Not a public API: [`crate::worker::Worker`] calls it.
    #[doc(hidden)]
    fn work(&self, claim: crate::store::Claim) -> BoxFuture<'_, Result<(), RunError>>;
}

/// A run of a [`DynDurable`] workflow: a [`RunHandle`] whose output is JSON.
pub struct JsonRun {
    id: RunId,
    events: crate::events::EventStream,
    canceller: run::Canceller,
    output: BoxFuture<'static, Result<serde_json::Value, RunError>>,
}

impl JsonRun {
    fn new<W: Persist<()>>(handle: RunHandle<W::Output>) -> Self {
        Self {
            id: handle.id(),
            events: handle.events(),
            canceller: handle.canceller(),
            output: Box::pin(async move {
                let output = handle.await?;
                W::save_output(&output).map_err(|error| RunError::Decode {
                    what: "the run's output".to_owned(),
                    error: error.to_string(),
                })
            }),
        }
    }

    /// The run's id.
    pub fn id(&self) -> RunId {
        self.id
    }

    /// A subscription to the events of this part of the run, from its first (for a
    /// resumed run, the first after it was taken up; see [`RunHandle::events`]).
    pub fn events(&self) -> crate::events::EventStream {
        self.events.clone()
    }

    /// A handle that cancels the run.
    pub fn canceller(&self) -> run::Canceller {
        self.canceller.clone()
    }

    /// Waits for the run to end (or pause) and returns its output as JSON.
    ///
    /// # Errors
    ///
    /// The run's error, as [`RunHandle::wait`] gives it.
    pub async fn wait(self) -> Result<serde_json::Value, RunError> {
        self.output.await
    }
}

impl fmt::Debug for JsonRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonRun")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A workflow's input from JSON, or the error that says it has the wrong type.
fn input_from_json<W: Persist<()>>(input: serde_json::Value) -> Result<W::Input, RunError> {
    W::load_input(input).map_err(|error| RunError::Decode {
        what: format!("the input of `{}`", W::graph().name),
        error: error.to_string(),
    })
}

/// A boxed future borrowing `'a`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<W: Persist<()>> DynDurable for Durable<W> {
    fn graph(&self) -> &'static crate::graph::Graph {
        W::graph()
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn start_json(&self, input: serde_json::Value) -> BoxFuture<'_, Result<RunId, RunError>> {
        Box::pin(async move {
            let input = input_from_json::<W>(input)?;
            Ok(self.start(input).await?.id())
        })
    }

    fn resume_json(&self, id: RunId) -> BoxFuture<'_, Result<serde_json::Value, RunError>> {
        Box::pin(async move { JsonRun::new::<W>(self.resume(id).await?).wait().await })
    }

    fn start_run(&self, input: serde_json::Value) -> BoxFuture<'_, Result<JsonRun, RunError>> {
        Box::pin(async move {
            let input = input_from_json::<W>(input)?;
            Ok(JsonRun::new::<W>(self.start(input).await?))
        })
    }

    fn resume_run(&self, id: RunId) -> BoxFuture<'_, Result<JsonRun, RunError>> {
        Box::pin(async move { Ok(JsonRun::new::<W>(self.resume(id).await?)) })
    }

    fn answer_run(
        &self,
        id: RunId,
        answer: serde_json::Value,
    ) -> BoxFuture<'_, Result<JsonRun, RunError>> {
        Box::pin(async move { Ok(JsonRun::new::<W>(self.answer_json(id, answer).await?)) })
    }

    fn submit_json(&self, input: serde_json::Value) -> BoxFuture<'_, Result<RunId, RunError>> {
        Box::pin(async move {
            let input = input_from_json::<W>(input)?;
            self.submit(input).await
        })
    }

    fn work(&self, claim: crate::store::Claim) -> BoxFuture<'_, Result<(), RunError>> {
        W::work(
            Arc::clone(self.workflow.context()),
            self.workflow.options().clone(),
            crate::worker::WorkTask {
                store: Arc::clone(&self.store),
                claim,
            },
        )
    }
}

/// Where a durable run starts from. Not a public API: `workflow!` passes it through.
#[doc(hidden)]
pub struct DurableRun<I> {
    id: RunId,
    store: Arc<dyn Store>,
    log: Arc<EventLog>,
    cancel: run::Canceller,
    origin: Origin<I>,
    /// The input as stored with the run.
    input: serde_json::Value,
    /// The graph's structural hash.
    graph_hash: Arc<str>,
    /// Whether a state graph's run keeps its history.
    history: bool,
}

impl<I> DurableRun<I> {
    /// Where the run starts from, and what drives it: its id, its log, its cancellation
    /// and a recorder that stores from the log's first event on.
    fn into_parts(self) -> (Origin<I>, Parts) {
        let recorder = Recorder {
            store: self.store,
            id: self.id,
            saved: self.log.next_seq(),
            last: None,
        };
        let parts = Parts {
            id: self.id,
            log: self.log,
            cancel: self.cancel,
            recorder,
            input: self.input,
            graph_hash: self.graph_hash,
            history: self.history,
        };
        (self.origin, parts)
    }
}

/// What drives a durable run, whatever its shape.
struct Parts {
    id: RunId,
    log: Arc<EventLog>,
    cancel: run::Canceller,
    recorder: Recorder,
    input: serde_json::Value,
    graph_hash: Arc<str>,
    history: bool,
}

// Made once per run: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Origin<I> {
    New(I),
    Resume {
        input: I,
        checkpoints: Vec<Checkpoint>,
        state: Option<StateCheckpoint>,
    },
}

/// What [`Persist::answer`] works from. Not a public API: `workflow!` passes it through.
#[doc(hidden)]
pub struct AnswerArgs<C, I> {
    ctx: Arc<C>,
    input: I,
    state: Option<StateCheckpoint>,
    node: crate::graph::NodeId,
    answer: serde_json::Value,
    log: Arc<EventLog>,
    /// Whether the run keeps its history.
    history: bool,
}

/// The future [`Persist::answer`] returns.
#[doc(hidden)]
pub type AnswerFuture = Pin<Box<dyn Future<Output = Result<Progress, RunError>> + Send>>;

/// The error for an answer of the wrong type.
fn wrong_answer(
    graph: &crate::graph::Graph,
    node: crate::graph::NodeId,
    error: &StepError,
) -> RunError {
    let def = graph.node(node);
    RunError::Decode {
        what: format!("the answer to `{}` (a `{}`)", def.name, def.output_type),
        error: error.to_string(),
    }
}

/// Checks an answer to a dataflow workflow's pause: it becomes the pause node's checkpoint.
#[doc(hidden)]
pub fn answer_dataflow<W: Compiled + PersistNodes>(
    args: AnswerArgs<W::Context, W::Input>,
) -> AnswerFuture {
    Box::pin(async move {
        let AnswerArgs {
            ctx,
            input,
            node,
            answer,
            log,
            ..
        } = args;
        let graph = W::graph();
        let run = W::new_run(ctx, input);
        W::restore_node(&run, node, answer.clone())
            .map_err(|error| wrong_answer(graph, node, &error))?;
        let def = graph.node(node);
        log.emit(EventKind::Answered {
            node: def.name.into(),
        });
        let now = Timestamp::now();
        Ok(Progress::Nodes(vec![Checkpoint {
            node: def.name.to_owned(),
            output: answer,
            attempts: 1,
            started_at: now,
            finished_at: now,
            writes: Vec::new(),
        }]))
    })
}

/// Checks an answer to a state graph's pause: the pause step gives it to the state, the
/// node's route picks the next node, and the state after it is what the store records.
#[doc(hidden)]
pub fn answer_state_graph<W: CompiledStateGraph>(
    args: AnswerArgs<W::Context, W::State>,
    save: fn(&W::State) -> Result<serde_json::Value, StepError>,
    load: fn(serde_json::Value) -> Result<W::State, StepError>,
) -> AnswerFuture {
    Box::pin(async move {
        let AnswerArgs {
            ctx,
            input,
            state,
            node,
            answer,
            log,
            history,
        } = args;
        let graph = W::graph();
        let Some(def) = graph.state_graph() else {
            return Err(RunError::Internal(format!(
                "`{}` is not a state graph",
                graph.name
            )));
        };
        let (state, steps, mut rounds, before) = match state {
            Some(checkpoint) => {
                let before = history.then(|| checkpoint.state.clone());
                let state = load(checkpoint.state).map_err(|error| RunError::Decode {
                    what: format!("the state stored after step {}", checkpoint.step),
                    error: error.to_string(),
                })?;
                (state, checkpoint.step, checkpoint.rounds, before)
            }
            None if history => {
                let before = save(&input).map_err(|error| RunError::Decode {
                    what: "the run's input".to_owned(),
                    error: error.to_string(),
                })?;
                (input, 0, Vec::new(), Some(before))
            }
            None => (input, 0, Vec::new(), None),
        };
        rounds.resize(graph.nodes.len(), 0);
        let (state, arm) = W::node(&ctx, node, state, Some(answer))
            .await
            .map_err(|error| wrong_answer(graph, node, &error))?;
        let name = graph.node(node).name;
        log.emit(EventKind::Answered { node: name.into() });
        let next = run::route(graph, def, node, arm, &mut rounds, &log)?;
        let now = Timestamp::now();
        let after = save(&state).map_err(|error| RunError::Decode {
            what: "the state after the answer".to_owned(),
            error: error.to_string(),
        })?;
        Ok(Progress::State(StateCheckpoint {
            step: steps + 1,
            node: name.to_owned(),
            change: before.map(|before| run::change(&before, &after)),
            writes: Vec::new(),
            state: after,
            rounds,
            next: match next {
                Target::Node(next) => Some(graph.node(next).name.to_owned()),
                Target::End => None,
            },
            attempts: 1,
            started_at: now,
            finished_at: now,
        }))
    })
}

/// The future [`Persist::drive`] returns.
#[doc(hidden)]
pub type DriveFuture<O> = Pin<Box<dyn Future<Output = Result<O, RunError>> + Send>>;

/// Ends a durable run that could not start: its log gets a terminal event, so that its
/// subscribers end; the store is left as it is.
fn refuse<O>(log: &EventLog, error: RunError) -> Result<O, RunError> {
    log.emit(crate::events::EventKind::RunFailed {
        node: "".into(),
        error: error.to_string(),
        duration: log.elapsed(),
    });
    Err(error)
}

/// Drives a durable run of a dataflow workflow (what [`Persist::drive`] does for one).
#[doc(hidden)]
pub fn drive_dataflow<W: Compiled + PersistNodes>(
    ctx: Arc<W::Context>,
    options: RunOptions,
    run: DurableRun<W::Input>,
    save_output: fn(&W::Output) -> Result<serde_json::Value, StepError>,
) -> DriveFuture<W::Output> {
    Box::pin(async move {
        let (
            origin,
            Parts {
                id,
                log,
                cancel,
                mut recorder,
                input: input_json,
                ..
            },
        ) = run.into_parts();
        let graph = W::graph();
        let (input, checkpoints, resumed) = match origin {
            Origin::New(input) => (input, Vec::new(), false),
            Origin::Resume {
                input, checkpoints, ..
            } => (input, checkpoints, true),
        };
        let state = Arc::new(W::new_run(ctx, input));
        let mut restored = vec![false; graph.nodes.len()];
        let finder = graph.finder(checkpoints.len());
        for checkpoint in checkpoints {
            let Some(node) = finder.find(&checkpoint.node) else {
                let error = RunError::Internal(format!(
                    "the stored run has a checkpoint of `{}`, which is not a node of `{}`",
                    checkpoint.node, graph.name
                ));
                return refuse(&log, error);
            };
            if let Err(error) = W::restore_node(&state, node, checkpoint.output) {
                let error = RunError::Decode {
                    what: format!("the checkpoint of node `{}`", checkpoint.node),
                    error: error.to_string(),
                };
                return refuse(&log, error);
            }
            restored[node.0] = true;
        }
        let cache = NodeCache {
            store: Arc::clone(&recorder.store),
            input: input_json,
        };
        let durability = Durability {
            recorder: &mut recorder,
            restored,
            resumed,
            cache: Arc::new(cache),
        };
        let result = run::drive::<W>(
            id,
            Typed::persisted(state),
            options,
            Arc::clone(&log),
            cancel,
            Some(durability),
        )
        .await;
        recorder.finish(&log, result, save_output).await
    })
}

/// Drives a durable run of a state graph (what [`Persist::drive`] does for one).
#[doc(hidden)]
pub fn drive_state_graph<W: CompiledStateGraph>(
    ctx: Arc<W::Context>,
    options: RunOptions,
    run: DurableRun<W::State>,
    save: fn(&W::State) -> Result<serde_json::Value, StepError>,
    load: fn(serde_json::Value) -> Result<W::State, StepError>,
) -> DriveFuture<W::State> {
    Box::pin(async move {
        let (
            origin,
            Parts {
                id,
                log,
                cancel,
                mut recorder,
                graph_hash,
                history,
                input: input_json,
            },
        ) = run.into_parts();
        let graph = W::graph();
        // The state before the next node: the input, or the last state stored.
        let mut before = history.then_some(input_json);
        let walk = match origin {
            Origin::New(state) => Walk::start(state),
            Origin::Resume {
                input, state: None, ..
            } => Walk {
                resumed: true,
                ..Walk::start(input)
            },
            Origin::Resume {
                state: Some(checkpoint),
                ..
            } => {
                if history {
                    before = Some(checkpoint.state.clone());
                }
                let state = match load(checkpoint.state) {
                    Ok(state) => state,
                    Err(error) => {
                        let error = RunError::Decode {
                            what: format!("the state stored after step {}", checkpoint.step),
                            error: error.to_string(),
                        };
                        return refuse(&log, error);
                    }
                };
                let next = match checkpoint.next {
                    None => Target::End,
                    Some(name) => {
                        let Some(node) = graph.find(&name) else {
                            let error = RunError::Internal(format!(
                                "the stored run goes on at `{name}`, which is not a node of `{}`",
                                graph.name
                            ));
                            return refuse(&log, error);
                        };
                        Target::Node(node)
                    }
                };
                Walk {
                    state,
                    rounds: checkpoint.rounds,
                    steps: checkpoint.step,
                    next: Some(next),
                    resumed: true,
                }
            }
        };
        let durability = StateDurability {
            recorder: &mut recorder,
            save,
            load,
            graph_hash,
            before,
        };
        let result = run::drive_state::<W>(
            id,
            ctx,
            walk,
            options,
            Arc::clone(&log),
            cancel,
            Some(durability),
        )
        .await;
        recorder.finish(&log, result, save).await
    })
}
