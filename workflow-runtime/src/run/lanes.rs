//! Decentralised readiness, for runs that keep nothing in a store and run their steps in
//! tokio tasks: a step that ends marks its dependents itself and goes on with one that became
//! ready in its own task. The others wait in the run's queue of ready nodes, which every
//! task of the run takes from once it has nothing else to run. The run's own task only
//! starts the roots, watches for cancellation and the deadline, and ends the run once no step
//! is left in flight (or one failed).
//!
//! A task is spawned only where it adds something:
//! - while fewer of the run's tasks are busy than the runtime has workers (plus one: tokio
//!   runs the first task a worker spawns on that worker, after the spawner, where no other
//!   worker can take it), if the work it would take is worth a task: the queue holds
//!   [`WORTH_A_TASK`] of work, or the task that would run it has that much work ahead of
//!   it (the steps it ran since it last looked, and the one it is about to start). Each
//!   node's step time is the one its last run measured ([`NodeCost`], kept in the
//!   workflow's static graph); a step that never ran counts as long. A run of light steps
//!   (a pipeline of transformations) then stays in one task, where a helper task on
//!   another worker would cost more than it saves;
//! - whenever a task's step waits with nodes left in the queue, which it hands to a new
//!   task, whatever their times.
//!
//! So steps that compute (a fan-out of a thousand) run in about as many tasks as there are
//! workers, not one task each, and steps that wait (calls to an LLM) each end up in a task
//! of their own, all waiting at once. A task that has run steps for a millisecond without
//! waiting yields to tokio, so a long run of steps does not keep other tasks from its
//! worker. A step whose time jumps (light in its last run, long in this one) without
//! waiting holds up the nodes queued behind it until it ends, as a task in tokio's LIFO
//! slot would.
//!
//! Each node's count of missing inputs is an atomic: the step that brings it to zero owns
//! the node's start, so every node starts exactly once. What is rare (a skipped node, a
//! pause, a failure) takes one lock.
//!
//! A run that stops (cancelled, past its deadline, or failed) does not abort its tasks: each
//! task that waits in a step listens for the stop and drops the step where it waits, as an
//! aborted task would. A step that ends without waiting (most computations) costs no
//! listening at all, where an abort handle per task cost every step two locks and two
//! reference counts on its task.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tracing::Instrument as _;

use super::{
    Canceller, Completion, Deadline, Finished, Paused, RunError, emit_failure, node_attempts,
    skip_downstream,
};
use crate::cache::NodeCache;
use crate::events::{EventKind, EventLog};
use crate::graph::{Graph, NodeCost, NodeId};
use crate::private::Nodes;

/// What the steps of one run share. In declaration order (`repr(C)`): what every step
/// reads first, on the line of the `Arc`'s counts that every task writes anyway, so that
/// checking whether the run stopped before a task starts costs no line of its own.
#[repr(C)]
struct Lanes {
    /// Set once the run fails or is cancelled: no step starts any more.
    stopped: AtomicBool,
    run: Arc<dyn Nodes>,
    graph: &'static Graph,
    log: Arc<EventLog>,
    seed: u64,
    /// Per node, how many of its inputs do not exist yet.
    waiting_for: Box<[AtomicUsize]>,
    /// The nodes made ready that no task has started yet.
    ready: Ready,
    /// How many tasks run steps or are about to (one waiting in a step does not count).
    busy: AtomicUsize,
    /// How many busy tasks the run spreads its ready nodes to: one more than the runtime's
    /// workers (the first task a worker spawns runs on that worker once the spawner is done,
    /// where no other worker can take it). Looked up when first needed: a chain never
    /// spreads.
    spread_to: OnceLock<usize>,
    /// The run's span, the parent of every step's.
    span: tracing::Span,
    /// Wakes the tasks waiting in a step once the run stops.
    stopping: Notify,
    /// What is rare and needs a lock.
    control: Mutex<Control>,
    /// How many step tasks are live, and the signal the run's task waits on.
    ended: Ended,
}

/// The skipped nodes, the first pause and the first failure of a run.
struct Control {
    /// Empty until a node is skipped.
    skipped: Vec<bool>,
    paused: Option<(NodeId, serde_json::Value)>,
    failure: Option<RunError>,
}

/// The nodes made ready that no task has started yet, first in first out. A node is made
/// ready at most once, so the queue is a slot per node, filled from the front once.
///
/// A task that makes a node ready writes it to its slot just after it takes the slot: a
/// task that finds the slot at the head not written yet leaves it, and its writer takes it
/// later (every task that adds nodes takes from the queue until it is empty before it ends,
/// or hands it to a new task when it waits).
struct Ready {
    slots: Box<[AtomicUsize]>,
    /// The next slot to take.
    head: AtomicUsize,
    /// The next slot to fill.
    tail: AtomicUsize,
}

impl Ready {
    /// A slot not written yet.
    const EMPTY: usize = usize::MAX;

    fn new(nodes: usize) -> Self {
        Self {
            slots: (0..nodes).map(|_| AtomicUsize::new(Self::EMPTY)).collect(),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    /// Adds `node` at the tail; how many nodes the queue then holds (taken or not, the
    /// moment it was added).
    fn push(&self, node: NodeId) -> usize {
        let slot = self.tail.fetch_add(1, Ordering::SeqCst);
        self.slots[slot].store(node.0, Ordering::SeqCst);
        (slot + 1).saturating_sub(self.head.load(Ordering::SeqCst))
    }

    /// The head slot's index and node, if the node can be taken.
    fn peek(&self) -> Option<(usize, NodeId)> {
        let head = self.head.load(Ordering::SeqCst);
        if head >= self.tail.load(Ordering::SeqCst) {
            return None;
        }
        let node = self.slots[head].load(Ordering::SeqCst);
        (node != Self::EMPTY).then_some((head, NodeId(node)))
    }

    /// Takes the node at the head, if it can be taken.
    fn pop(&self) -> Option<NodeId> {
        loop {
            let (head, node) = self.peek()?;
            if self
                .head
                .compare_exchange_weak(head, head + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Some(node);
            }
        }
    }

    /// Whether the node at the head can be taken.
    fn has_next(&self) -> bool {
        self.peek().is_some()
    }
}

/// How many step tasks are live, and the signal the run's task waits on.
#[derive(Default)]
struct Ended {
    live: AtomicUsize,
    notify: Notify,
}

impl Ended {
    fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Completes once no task is live.
    async fn drained(&self) {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Counts a task out; the last one wakes the run's task.
    fn leave(&self) {
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.notify.notify_one();
        }
    }
}

/// One step task's place in the count of live tasks: counted in when the task is made, out
/// when it is dropped: at its end, at the run's stop, or by its runtime (unpolled, or in the
/// middle of a step).
struct Lane {
    lanes: Option<Arc<Lanes>>,
    /// Whether the task ran to its end (any other drop of a run not stopped is a panic).
    finished: bool,
}

impl Lane {
    /// Marks the task as having run to its end.
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        let Some(lanes) = self.lanes.take() else {
            return;
        };
        if !self.finished && !lanes.stopped.load(Ordering::SeqCst) {
            lanes.fail(RunError::Internal(
                "a step task ended abnormally".to_owned(),
            ));
        }
        // A task counts itself out before it lets go of the run: the run's task, once the
        // count is zero, waits for the last references to go (a moment).
        lanes.ended.leave();
    }
}

impl Lanes {
    /// The shared part of a new run.
    fn new(graph: &'static Graph, run: Arc<dyn Nodes>, seed: u64, log: Arc<EventLog>) -> Self {
        Self {
            run,
            graph,
            log,
            seed,
            span: tracing::Span::current(),
            waiting_for: graph
                .nodes
                .iter()
                .map(|n| AtomicUsize::new(n.deps.len()))
                .collect(),
            ready: Ready::new(graph.nodes.len()),
            busy: AtomicUsize::new(0),
            spread_to: OnceLock::new(),
            stopped: AtomicBool::new(false),
            stopping: Notify::new(),
            control: Mutex::new(Control {
                skipped: Vec::new(),
                paused: None,
                failure: None,
            }),
            ended: Ended::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// A lane for a task, counted in.
    fn lane(self: &Arc<Self>) -> Lane {
        self.ended.live.fetch_add(1, Ordering::AcqRel);
        Lane {
            lanes: Some(Arc::clone(self)),
            finished: false,
        }
    }

    /// Starts a task that takes nodes from the queue of ready ones, counted busy.
    fn spawn(self: &Arc<Self>) {
        drop(tokio::spawn(
            run_lane(self.lane(), None).instrument(self.span.clone()),
        ));
    }

    /// Adds `node` to the queue of ready nodes, and starts a task to take from it unless
    /// enough are busy or the queue holds too little work to be worth a task.
    fn enqueue(self: &Arc<Self>, node: NodeId) {
        let queued = self.ready.push(node);
        if self.busy.load(Ordering::SeqCst) < self.spread_to()
            && worth_a_task(self.last_took(node), queued)
        {
            self.spread_away();
        }
    }

    /// A task is about to run `node`'s step, after the steps it ran since it last looked at
    /// the queue, which took `ahead` (by their last times). Once that and this step add up
    /// to [`WORTH_A_TASK`] (a step that never ran counts as that much), and ready nodes wait
    /// in the queue, another task takes them rather than let them wait for this task.
    fn starting(self: &Arc<Self>, node: NodeId, ahead: &mut Duration) {
        *ahead = ahead.saturating_add(self.last_took(node).unwrap_or(WORTH_A_TASK));
        if *ahead >= WORTH_A_TASK {
            *ahead = Duration::ZERO;
            if self.ready.has_next() {
                self.spread_away();
            }
        }
    }

    /// How long `node`'s step last took, if it ran before (in any run of the workflow).
    fn last_took(&self, node: NodeId) -> Option<Duration> {
        self.graph.costs.get(node.0).and_then(NodeCost::last)
    }

    /// One more than the runtime's workers (see [`Lanes::spread_to`]).
    fn spread_to(&self) -> usize {
        *self.spread_to.get_or_init(|| {
            1 + tokio::runtime::Handle::try_current()
                .map_or(1, |runtime| runtime.metrics().num_workers())
        })
    }

    /// Starts a task to take from the queue of ready nodes, unless enough are busy.
    fn spread(self: &Arc<Self>) {
        let spread_to = self.spread_to();
        let mut busy = self.busy.load(Ordering::SeqCst);
        while busy < spread_to {
            match self.busy.compare_exchange_weak(
                busy,
                busy + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return self.spawn(),
                Err(now) => busy = now,
            }
        }
    }

    /// Starts tasks to take from the queue of ready nodes while this task goes on running
    /// steps: two, unless enough are busy. The first task a worker spawns waits in that
    /// worker's LIFO slot, where no other worker can take it, until the spawning task
    /// gives the worker back; the second pushes it out to where the other workers take
    /// from, and wakes one.
    fn spread_away(self: &Arc<Self>) {
        self.spread();
        self.spread();
    }

    /// The next ready node for a task that has run out of its own; `None` once the queue
    /// is empty, and the task no longer counts as busy.
    fn take_ready(&self) -> Option<NodeId> {
        loop {
            if let Some(node) = self.ready.pop() {
                return Some(node);
            }
            self.busy.fetch_sub(1, Ordering::SeqCst);
            // A node added meanwhile by a task that saw this one busy (and so started no
            // task for it) is this task's to take.
            if !self.ready.has_next() {
                return None;
            }
            self.busy.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A task's step waits: the task no longer counts as busy, and hands the ready nodes to
    /// a new task.
    fn idle(self: &Arc<Self>) {
        self.busy.fetch_sub(1, Ordering::SeqCst);
        if self.ready.has_next() {
            self.spread();
        }
    }

    /// Fails the run with `error` (unless it failed already), stops every step from
    /// starting, and wakes the run's task.
    fn fail(&self, error: RunError) {
        self.lock().failure.get_or_insert(error);
        self.stopped.store(true, Ordering::SeqCst);
        self.ended.notify.notify_one();
    }

    /// Stops the run: no step starts any more, and every task waiting in a step drops it.
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stopping.notify_waiters();
    }

    /// Polls `step`: its output, or `None` once the run has stopped. A step that waits is
    /// dropped where it waits, as an aborted task's would be. The listening for the stop
    /// (`stopping`, kept by the task for all its steps) is set up at the task's first wait:
    /// a step that ends without waiting never pays for it. While the step waits (`waiting`),
    /// its task does not count as busy.
    fn poll_step<'a, F: Future>(
        self: &'a Arc<Self>,
        step: Pin<&mut F>,
        (stopping, waiting): (&mut Option<Pin<Box<Notified<'a>>>>, &mut bool),
        cx: &mut Context<'_>,
    ) -> Poll<Option<F::Output>> {
        if stopping.is_some() && self.is_stopped() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(output) = step.poll(cx) {
            if std::mem::take(waiting) {
                self.busy.fetch_add(1, Ordering::SeqCst);
            }
            return Poll::Ready(Some(output));
        }
        if !std::mem::replace(waiting, true) {
            self.idle();
        }
        // A `Notified` hears every `notify_waiters` from the moment it is made, polled or
        // not; `stop` sets the flag before it notifies.
        let fresh = stopping.is_none();
        let listening = stopping.get_or_insert_with(|| Box::pin(self.stopping.notified()));
        if fresh && self.is_stopped() {
            return Poll::Ready(None);
        }
        match listening.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// `node`'s output arrived at `dependent`: whether that was its last missing input.
    fn arrived(&self, dependent: NodeId) -> bool {
        self.waiting_for[dependent.0].fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Takes in how a node ended; returns the node this task goes on with, if any, and
    /// queues the others that became ready.
    fn settle(self: &Arc<Self>, (node, finished): Completion) -> Option<NodeId> {
        let mut next = None;
        // The first node made ready goes on in this task, the others wait in the queue: on
        // one thread, nodes start in the graph's order.
        let mut ready = |lanes: &Arc<Self>, dependent: NodeId| {
            if next.is_none() {
                next = Some(dependent);
            } else {
                lanes.enqueue(dependent);
            }
        };
        match finished {
            Ok(Finished::Done(_)) => {
                if self.is_stopped() {
                    return None;
                }
                for &dependent in self.graph.node(node).dependents {
                    if self.arrived(dependent) {
                        ready(self, dependent);
                    }
                }
            }
            Ok(Finished::Skipped) => {
                let mut readers = Vec::new();
                {
                    let mut control = self.lock();
                    control.skipped.resize(self.waiting_for.len(), false);
                    skip_downstream(
                        self.graph,
                        node,
                        &self.log,
                        &mut control.skipped,
                        |reader| {
                            readers.push(reader);
                        },
                    );
                }
                if self.is_stopped() {
                    return None;
                }
                for reader in readers {
                    if self.arrived(reader) {
                        ready(self, reader);
                    }
                }
            }
            Ok(Finished::Paused(request)) => {
                // The nodes downstream wait for the answer; the others go on.
                self.lock().paused.get_or_insert((node, request));
            }
            Err((step, source)) => {
                self.fail(RunError::Step {
                    node: self.graph.node(node).name,
                    step,
                    source,
                });
            }
        }
        next
    }
}

/// A step task: runs its node (or, without one, the next ready node), then each node it
/// makes ready that it keeps, then ready nodes from the queue until it is empty. Counted
/// busy by whoever starts it. (An `async move` block rather than an `async fn`, which would
/// hold its arguments twice.)
#[expect(
    clippy::manual_async_fn,
    reason = "an `async fn` future holds its arguments twice (rust-lang/rust#62958)"
)]
fn run_lane(mut lane: Lane, first: Option<NodeId>) -> impl Future<Output = ()> + Send {
    async move {
        // Borrowed from the lane, not cloned: once the lane is dropped, this task holds
        // nothing of the run.
        if let Some(lanes) = lane.lanes.as_ref()
            && let Some(node) = first.or_else(|| lanes.take_ready())
            // A task that the run's stop came before starts nothing.
            && !lanes.is_stopped()
        {
            let mut ahead = Duration::ZERO;
            let mut attempts = |node| {
                lanes.starting(node, &mut ahead);
                node_attempts(
                    &lanes.run,
                    lanes.graph,
                    node,
                    &lanes.log,
                    (lanes.seed, false),
                    None::<&Arc<NodeCache>>,
                )
            };
            // The attempts' state lives in one box per task, which each node the task goes
            // on with reuses: the task itself stays a few words, which tokio copies into
            // `spawn`, into the task's cell and over it when it ends.
            let mut step = Box::pin(attempts(node));
            let (mut stopping, mut waiting) = (None, false);
            let mut turn = Turn::default();
            while let Some(completion) = std::future::poll_fn(|cx| {
                lanes.poll_step(step.as_mut(), (&mut stopping, &mut waiting), cx)
            })
            .await
            {
                match lanes.settle(completion).or_else(|| lanes.take_ready()) {
                    Some(next) if !lanes.is_stopped() => step.set(attempts(next)),
                    _ => break,
                }
                if turn.is_over() {
                    yield_once().await;
                }
            }
        }
        lane.finish();
    }
}

/// Gives the worker back to tokio once: wakes its task and returns pending, so tokio polls
/// the task again after the other tasks that are ready. (Not `tokio::task::yield_now`, which
/// defers the wake to a list that each `block_on` allocates anew: the allocation counts of a
/// run would depend on its timing.)
fn yield_once() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if std::mem::replace(&mut yielded, true) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

/// How long a task runs steps before it gives its worker back to tokio, for the other tasks
/// on that worker: tokio's guidance for the time between two `.await`s that yield is 10 to
/// 100 µs, and a step that computes longer than that should run in `spawn_blocking`.
const TURN: Duration = Duration::from_millis(1);

/// How much work is worth another task. A task costs a run a few microseconds (its spawn,
/// waking a worker that sleeps, and waiting for it at the run's end) and saves at most the
/// work it takes over. So ready nodes wait in the queue while it holds less than this much
/// work, and for no more than about this much of their task's work ahead of them (both by
/// the steps' last times), before a task is started for them (if fewer than enough are
/// busy).
const WORTH_A_TASK: Duration = Duration::from_micros(10);

/// Whether a queue of `count` ready nodes that take as long as the last one added did
/// last time (`last`) is worth another task; a node that never ran is. (The queue's length
/// times the time of the node just added stands for the work in it, counted anew at each
/// node added.)
fn worth_a_task(last: Option<Duration>, count: usize) -> bool {
    last.is_none_or(|took| {
        took.saturating_mul(u32::try_from(count).unwrap_or(u32::MAX)) >= WORTH_A_TASK
    })
}

/// How many steps a task runs between two looks at the clock.
const STEPS_PER_LOOK: u32 = 16;

/// A task's turn on its worker: steps that never wait run one after another in the same
/// poll of the task, and a task that has run them for [`TURN`] yields. The clock is read
/// every [`STEPS_PER_LOOK`] steps, not every step (a read costs a few percent of a step
/// that computes little), and never by a task that runs fewer.
#[derive(Default)]
struct Turn {
    steps: u32,
    since: Option<Instant>,
}

impl Turn {
    /// Counts a step; whether the task's turn is over (the count starts again from there).
    fn is_over(&mut self) -> bool {
        self.steps = self.steps.wrapping_add(1);
        if !self.steps.is_multiple_of(STEPS_PER_LOOK) {
            return false;
        }
        let now = Instant::now();
        match self.since {
            Some(since) if now.duration_since(since) < TURN => false,
            Some(_) => {
                self.since = Some(now);
                true
            }
            None => {
                self.since = Some(now);
                false
            }
        }
    }
}

/// Whether a run can use decentralised readiness: nothing to store, steps in tasks, no
/// limit on how many run at once (the limit needs one place that counts).
pub(super) fn applies(options: &super::RunOptions) -> bool {
    options.parallelism == super::Parallelism::Tasks && options.max_concurrency.is_none()
}

/// Drives a run that keeps nothing in a store, with steps in tasks and no concurrency
/// limit. The first root runs in the run's own task (a chain then never spawns); the
/// other roots wait in the queue of ready nodes.
pub(super) async fn drive(
    graph: &'static Graph,
    run: Arc<dyn Nodes>,
    seed: u64,
    log: Arc<EventLog>,
    cancel: Canceller,
    mut deadline: Deadline,
) -> Result<Paused, RunError> {
    let lanes = Arc::new(Lanes::new(graph, run, seed, Arc::clone(&log)));
    // Its start and end, and each step's start and end when nothing fails.
    log.reserve(2 + 2 * graph.nodes.len());
    log.emit(EventKind::RunStarted {
        workflow: graph.name.into(),
    });
    let mut roots = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.deps.is_empty())
        .map(|(index, _)| NodeId(index));
    // Not boxed: a lane's future is a few words (its attempts have a box of their own).
    let mut inline = pin!(roots.next().map(|root| {
        lanes.busy.fetch_add(1, Ordering::SeqCst);
        run_lane(lanes.lane(), Some(root))
    }));
    for root in roots {
        lanes.enqueue(root);
    }
    // Polled once before anything else is waited for: steps that never wait (a chain of
    // computations) end the run without setting up the wait for its cancellation.
    let mut just_polled = false;
    if !cancel.is_cancelled()
        && let Some(mut lane) = inline.as_mut().as_pin_mut()
    {
        match std::future::poll_fn(|cx| Poll::Ready(lane.as_mut().poll(cx))).await {
            Poll::Ready(()) => inline.set(None),
            Poll::Pending => just_polled = true,
        }
    }
    let ended = &lanes.ended;
    let stopped: Option<RunError> = loop {
        let mut notified = pin!(ended.notify.notified());
        notified.as_mut().enable();
        if lanes.is_stopped() {
            break None;
        }
        if inline.is_none() && ended.live() == 0 {
            break None;
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => break Some(RunError::Cancelled),
            error = deadline.expired() => break Some(error),
            // Not polled twice in one poll of the run's task: after a first poll that did
            // not end it, it is waiting (and will wake the task), or yielding its worker,
            // which a second poll would undo (a yield is over once polled again).
            () = std::future::poll_fn(|cx| match inline.as_mut().as_pin_mut() {
                Some(_) if std::mem::take(&mut just_polled) => Poll::Pending,
                Some(lane) => lane.poll(cx),
                None => Poll::Pending,
            }), if inline.is_some() => inline.set(None),
            // The run's own lane, if it still runs, was polled just before (the branches
            // are polled in order) and is waiting or yielding.
            () = notified => just_polled = inline.is_some(),
        }
    };
    // Stopped by the run's task, by a failing step, or ended: in the first two cases every
    // step still in flight drops its step, and the run ends once every task has counted out.
    if stopped.is_some() || lanes.is_stopped() {
        lanes.stop();
        inline.set(None);
        ended.drained().await;
    }
    end(lanes, stopped, &log).await
}

/// The end of a run whose step tasks have all been dropped: how the run's task stopped it
/// (`stopped`: cancelled, or past its deadline), how a step failed it, or the node that
/// paused it, if one did (its output is then in its nodes' slots).
async fn end(
    mut lanes: Arc<Lanes>,
    stopped: Option<RunError>,
    log: &EventLog,
) -> Result<Paused, RunError> {
    let lanes = loop {
        match Arc::try_unwrap(lanes) {
            Ok(lanes) => break lanes,
            // A task that counted itself out and has yet to drop its reference.
            Err(shared) => {
                lanes = shared;
                tokio::task::yield_now().await;
            }
        }
    };
    let control = lanes
        .control
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    match stopped {
        Some(RunError::Cancelled) => {
            log.emit(EventKind::RunCancelled {
                duration: log.elapsed(),
            });
            return Err(RunError::Cancelled);
        }
        Some(error) => {
            emit_failure(log, &error);
            return Err(error);
        }
        None => {}
    }
    if let Some(failure) = control.failure {
        emit_failure(log, &failure);
        return Err(failure);
    }
    Ok(control.paused)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{WORTH_A_TASK, worth_a_task};

    #[test]
    fn steps_that_never_ran_are_worth_a_task() {
        assert!(worth_a_task(None, 1));
        assert!(worth_a_task(None, 100));
    }

    #[test]
    fn light_steps_are_worth_a_task_only_in_numbers() {
        assert_eq!(
            WORTH_A_TASK,
            Duration::from_micros(10),
            "the counts below assume it"
        );
        let light = Duration::from_nanos(300);
        assert!(!worth_a_task(Some(light), 1));
        assert!(!worth_a_task(Some(light), 33));
        assert!(worth_a_task(Some(light), 34));
        assert!(worth_a_task(Some(light), usize::MAX));
    }

    #[test]
    fn one_long_step_is_worth_a_task() {
        assert!(worth_a_task(Some(WORTH_A_TASK), 1));
        assert!(worth_a_task(Some(Duration::from_secs(4)), 1));
        assert!(!worth_a_task(Some(Duration::from_nanos(9_999)), 1));
    }
}
