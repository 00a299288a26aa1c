//! The scheduler's guarantees, on small purpose-built workflows.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[path = "support/flaky.rs"]
mod flaky;

use flaky::{Attempts, Flaky};
use workflow::prelude::*;
use workflow::{ErrorKind, Parallelism, RunId};

/// Counts drops, to prove that a cancelled step's future is dropped exactly once.
struct DropGuard<'a>(&'a AtomicUsize);

impl Drop for DropGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------
// Parallelism

struct Rendezvous {
    threads: std::sync::Barrier,
    tasks: tokio::sync::Barrier,
}

/// Blocks its thread until the other side arrives: passes only if both run on two threads
/// at once.
#[step]
fn meet_on_threads(ctx: &Rendezvous, x: u32) -> u32 {
    ctx.threads.wait();
    x
}

/// Waits until the other side arrives: passes only if both futures are polled concurrently.
#[step]
async fn meet_in_task(ctx: &Rendezvous, x: u32) -> u32 {
    ctx.tasks.wait().await;
    x
}

#[step]
fn add(a: u32, b: u32) -> u32 {
    a + b
}

workflow! {
    /// Two independent steps that can only finish together.
    ThreadPair(ctx: Rendezvous, x: u32) -> u32 {
        let a = meet_on_threads(x);
        let b = meet_on_threads(x);
        add(a, b)
    }
}

workflow! {
    /// Two independent steps that can only finish together.
    TaskPair(ctx: Rendezvous, x: u32) -> u32 {
        let a = meet_in_task(x);
        let b = meet_in_task(x);
        add(a, b)
    }
}

fn rendezvous() -> Rendezvous {
    Rendezvous {
        threads: std::sync::Barrier::new(2),
        tasks: tokio::sync::Barrier::new(2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_steps_run_on_several_threads_at_once() {
    let run = ThreadPair::new(rendezvous()).run(21);
    let output = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("both steps ran at the same time");
    assert_eq!(output.expect("succeeds"), 42);
}

/// Whether a step has raised it, and the signal to wait for it.
#[derive(Default)]
struct Signal {
    raised: std::sync::Mutex<bool>,
    changed: std::sync::Condvar,
}

/// Raises the signal.
#[step]
fn raise(ctx: &Signal, x: u32) -> u32 {
    *ctx.raised.lock().unwrap() = true;
    ctx.changed.notify_all();
    x
}

impl Signal {
    /// Blocks the thread up to ten seconds for the signal: whether it came.
    fn came(&self) -> bool {
        let raised = self.raised.lock().unwrap();
        let (raised, _) = self
            .changed
            .wait_timeout_while(raised, Duration::from_secs(10), |raised| !*raised)
            .unwrap();
        *raised
    }
}

/// Computes for 20 ms (blocking its thread), then blocks up to ten seconds more for the
/// signal: whether it came.
#[step]
fn long_then_wait_for_signal(ctx: &Signal, x: u32) -> bool {
    std::thread::sleep(Duration::from_millis(20));
    ctx.came() && x == 1
}

#[step]
fn first_of(long: bool, _short: u32) -> bool {
    long
}

workflow! {
    /// A long step, and a short one beside it that the long one waits for.
    LongBesideShort(ctx: Signal, x: u32) -> bool {
        let long = long_then_wait_for_signal(x);
        let short = raise(x);
        first_of(long, short)
    }
}

/// Drives four runs made by `run`, each from a task on a worker (as in a server), and
/// checks that each one's output is true (`failure` says what a false one means).
async fn true_in_four_runs_from_worker_tasks<F, Fut>(run: F, failure: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool, workflow::RunError>> + Send + 'static,
{
    for number in 0..4 {
        let output = tokio::spawn(run()).await.expect("the run's task ends");
        assert!(output.expect("succeeds"), "run {number}: {failure}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_step_does_not_hold_up_the_ready_nodes_behind_it() {
    // The first run knows nothing of its steps' times; the others know the long one took
    // 20 ms, and the short one a moment: it still goes to another task, on the other
    // worker. Each run is driven from a task on a worker, as in a server.
    true_in_four_runs_from_worker_tasks(
        || LongBesideShort::new(Signal::default()).run(1),
        "the short step waited",
    )
    .await;
    let costs = LongBesideShort::graph().costs;
    assert!(costs[0].last() >= Some(Duration::from_millis(20)));
    assert!(costs[1].last().is_some());
}

#[step]
fn echo(x: u32) -> u32 {
    x
}

/// Keeps the thread busy for `time`, without waiting.
fn compute_for(time: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < time {
        std::hint::spin_loop();
    }
}

/// Computes for 2 µs without waiting.
#[step]
fn spin_briefly(x: u32) -> u32 {
    compute_for(Duration::from_micros(2));
    x + 1
}

/// Blocks up to ten seconds for the signal: whether it came.
#[step]
fn wait_for_signal(ctx: &Signal, x: u32) -> bool {
    ctx.came() && x == 13
}

workflow! {
    /// Twelve short steps in a row, beside one that raises a signal, which the last waits
    /// for.
    ChainBesideSignal(ctx: Signal, x: u32) -> bool {
        let root = echo(x);
        let s1 = spin_briefly(root);
        let s2 = spin_briefly(s1);
        let s3 = spin_briefly(s2);
        let s4 = spin_briefly(s3);
        let s5 = spin_briefly(s4);
        let s6 = spin_briefly(s5);
        let s7 = spin_briefly(s6);
        let s8 = spin_briefly(s7);
        let s9 = spin_briefly(s8);
        let s10 = spin_briefly(s9);
        let s11 = spin_briefly(s10);
        let s12 = spin_briefly(s11);
        let _raised = raise(root);
        wait_for_signal(s12)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_steps_in_a_row_do_not_hold_up_the_ready_nodes_behind_them() {
    // Each of the twelve steps is short, but together they are worth another task for
    // the step that raises the signal, which otherwise waits for the last step, which
    // waits for it.
    true_in_four_runs_from_worker_tasks(
        || ChainBesideSignal::new(Signal::default()).run(1),
        "the signal waited",
    )
    .await;
}

/// How many tasks the runtime has.
#[step]
fn tasks_alive(_a: u32, _b: u32) -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

workflow! {
    /// A root, two leaves that do nothing, and a look at how many tasks there are.
    TwoLightLeaves(x: u32) -> usize {
        let root = echo(x);
        let a = echo(root);
        let b = echo(root);
        tasks_alive(a, b)
    }
}

#[tokio::test]
async fn nodes_made_ready_beside_light_steps_share_their_task() {
    // The first run has not measured its steps: the leaf made ready beside the other goes
    // to a task of its own (not yet polled, on this one thread, when the last step looks).
    let first = TwoLightLeaves::new().run(1).await.expect("succeeds");
    assert_eq!(first, 1);
    // From then on the leaves are known to take a moment: the queued one waits for the
    // run's task. (A step preempted by the machine once measures long: a run or two
    // may still spread.)
    let mut shared = 0;
    for _ in 0..20 {
        if TwoLightLeaves::new().run(1).await.expect("succeeds") == 0 {
            shared += 1;
        }
    }
    let costs: Vec<_> = TwoLightLeaves::graph()
        .costs
        .iter()
        .map(workflow::NodeCost::last)
        .collect();
    assert!(
        shared >= 15,
        "{shared} of 20 runs kept one task; times {costs:?}"
    );
}

#[tokio::test]
async fn a_single_task_run_still_overlaps_waiting_steps() {
    let options = RunOptions::new().parallelism(Parallelism::SingleTask);
    let run = TaskPair::new(rendezvous()).with_options(options).run(21);
    let output = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("both steps were polled concurrently");
    assert_eq!(output.expect("succeeds"), 42);
}

/// Waits until all six have arrived.
#[step]
async fn meet_six(ctx: &tokio::sync::Barrier, x: u32) -> u32 {
    ctx.wait().await;
    x
}

#[step]
#[allow(clippy::many_single_char_names)]
fn sum6(a: u32, b: u32, c: u32, d: u32, e: u32, f: u32) -> u32 {
    a + b + c + d + e + f
}

workflow! {
    /// Six independent steps that can only finish together: more than a 2-worker runtime
    /// keeps busy tasks for a run, so each step that waits must hand the others on.
    Six(ctx: tokio::sync::Barrier, x: u32) -> u32 {
        let a = meet_six(x);
        let b = meet_six(x);
        let c = meet_six(x);
        let d = meet_six(x);
        let e = meet_six(x);
        let f = meet_six(x);
        sum6(a, b, c, d, e, f)
    }
}

/// Runs `Six` in a task of its own (so the run's task is on a worker), and checks that all
/// six steps waited at once.
async fn six_wait_at_once() {
    let run = tokio::spawn(Six::new(tokio::sync::Barrier::new(6)).run(7));
    let output = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("all six steps waited at the same time")
        .expect("the run's task ends");
    assert_eq!(output.expect("succeeds"), 42);
}

#[tokio::test]
async fn steps_that_wait_all_wait_at_once_on_one_thread() {
    six_wait_at_once().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_that_wait_all_wait_at_once_on_two_workers() {
    for _ in 0..50 {
        six_wait_at_once().await;
    }
}

/// Computes for 100 µs without waiting.
#[step]
fn spin(x: u32) -> u32 {
    compute_for(Duration::from_micros(100));
    x + 1
}

/// How many times the ticker task has run so far.
#[step]
fn ticks_seen(ctx: &Arc<AtomicUsize>, x: u32) -> usize {
    assert_eq!(x, 40);
    ctx.load(Ordering::SeqCst)
}

workflow! {
    /// Forty steps of 100 µs each that never wait, then a look at the ticker.
    LongChain(ctx: Arc<AtomicUsize>, x: u32) -> usize {
        let s1 = spin(x);
        let s2 = spin(s1);
        let s3 = spin(s2);
        let s4 = spin(s3);
        let s5 = spin(s4);
        let s6 = spin(s5);
        let s7 = spin(s6);
        let s8 = spin(s7);
        let s9 = spin(s8);
        let s10 = spin(s9);
        let s11 = spin(s10);
        let s12 = spin(s11);
        let s13 = spin(s12);
        let s14 = spin(s13);
        let s15 = spin(s14);
        let s16 = spin(s15);
        let s17 = spin(s16);
        let s18 = spin(s17);
        let s19 = spin(s18);
        let s20 = spin(s19);
        let s21 = spin(s20);
        let s22 = spin(s21);
        let s23 = spin(s22);
        let s24 = spin(s23);
        let s25 = spin(s24);
        let s26 = spin(s25);
        let s27 = spin(s26);
        let s28 = spin(s27);
        let s29 = spin(s28);
        let s30 = spin(s29);
        let s31 = spin(s30);
        let s32 = spin(s31);
        let s33 = spin(s32);
        let s34 = spin(s33);
        let s35 = spin(s34);
        let s36 = spin(s35);
        let s37 = spin(s36);
        let s38 = spin(s37);
        let s39 = spin(s38);
        let s40 = spin(s39);
        ticks_seen(s40)
    }
}

#[tokio::test]
async fn a_long_run_of_steps_that_never_wait_lets_other_tasks_run() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = tokio::spawn({
        let ticks = Arc::clone(&ticks);
        async move {
            loop {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        }
    });
    // The run is polled first, so the ticker runs only where the run gives the thread back.
    let seen = LongChain::new(Arc::clone(&ticks))
        .run(0)
        .await
        .expect("succeeds");
    ticker.abort();
    assert!(seen > 0, "4 ms of steps never let the ticker run");
}

/// Yields to the scheduler first, so that steps of one level end in any order.
#[step]
async fn hop(x: u32) -> u32 {
    tokio::task::yield_now().await;
    x + 1
}

#[step]
fn add3(a: u32, b: u32, c: u32) -> u32 {
    a + b + c
}

workflow! {
    /// Diamonds that share inputs: joins whose inputs end on two threads at once.
    Lattice(x: u32) -> u32 {
        let a = hop(x);
        let b1 = hop(a);
        let b2 = hop(a);
        let b3 = hop(a);
        let b4 = hop(a);
        let c1 = add(b1, b2);
        let c2 = add(b2, b3);
        let c3 = add(b3, b4);
        let d1 = hop(c1);
        let d2 = hop(c2);
        let d3 = hop(c3);
        add3(d1, d2, d3)
    }
}

#[step]
fn plus_one(x: u32) -> u32 {
    x + 1
}

workflow! {
    /// Steps that never wait, eight ready at once twice over: the run's tasks take them
    /// from its queue of ready nodes, on two threads at once.
    Wide(x: u32) -> u32 {
        let a = plus_one(x);
        let b1 = plus_one(a); let b2 = plus_one(a); let b3 = plus_one(a); let b4 = plus_one(a);
        let b5 = plus_one(a); let b6 = plus_one(a); let b7 = plus_one(a); let b8 = plus_one(a);
        let c1 = add(b1, b2); let c2 = add(b3, b4); let c3 = add(b5, b6); let c4 = add(b7, b8);
        let d1 = plus_one(c1); let d2 = plus_one(c1); let d3 = plus_one(c2); let d4 = plus_one(c2);
        let d5 = plus_one(c3); let d6 = plus_one(c3); let d7 = plus_one(c4); let d8 = plus_one(c4);
        let e1 = add(d1, d2); let e2 = add(d3, d4); let e3 = add(d5, d6); let e4 = add(d7, d8);
        let f1 = add(e1, e2); let f2 = add(e3, e4);
        add(f1, f2)
    }
}

/// How many `step_started` events a run's log holds.
fn steps_started(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::StepStarted { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_made_ready_together_each_run_once_however_the_tasks_share_them() {
    // b = x + 2, c = 2b, d = 2b + 1, e = 4b + 2, f = 8b + 4, the output 16b + 8.
    let expected = |x: u32| 16 * (x + 2) + 8;
    let runs: Vec<_> = (0..2_000).map(|x| (x, Wide::new().start(x))).collect();
    for (x, handle) in runs {
        let events = handle.events();
        let output = tokio::time::timeout(Duration::from_secs(20), handle)
            .await
            .expect("the run ends");
        assert_eq!(output.expect("succeeds"), expected(x));
        let started = steps_started(&events.collect().await);
        assert_eq!(started, 28, "every node started exactly once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_whose_inputs_end_on_two_threads_start_once_with_every_input() {
    // x + 1 = a; b = a + 1; c = 2b; d = 2b + 1; the sum is 3(2b + 1).
    let expected = |x: u32| 3 * (2 * (x + 2) + 1);
    for x in 0..500 {
        let handle = Lattice::new().start(x);
        let events = handle.events();
        assert_eq!(handle.await.expect("succeeds"), expected(x));
        let events = events.collect().await;
        assert_eq!(
            steps_started(&events),
            12,
            "every node started exactly once"
        );
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.seq, i as u64, "sequence numbers are gapless");
        }
    }
}

#[step]
async fn spins(ctx: &Probe, x: u32) -> u32 {
    let _guard = DropGuard(&ctx.dropped);
    loop {
        tokio::task::yield_now().await;
        if ctx.finished.load(Ordering::SeqCst) == u32::MAX as usize {
            return x;
        }
    }
}

#[step]
async fn fails_after_yields(x: u32) -> Result<u32, Broken> {
    for _ in 0..x {
        tokio::task::yield_now().await;
    }
    Err(Broken)
}

workflow! {
    /// Steps that never end on their own beside one that fails.
    Spinners(ctx: Probe, x: u32) -> u32 {
        let a = spins(x);
        let b = spins(x);
        let c = spins(x);
        let d = spins(x);
        let e = fails_after_yields(x);
        let f = spins(e);
        let ab = add(a, b);
        let cd = add(c, d);
        add3(ab, cd, f)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_on_two_threads_drops_every_step_in_flight_before_the_run_ends() {
    for x in [0, 1, 5, 50] {
        let probe = Arc::new(Probe::default());
        let handle = Spinners::with_context(Arc::clone(&probe)).start(x);
        let events = handle.events();
        let error = tokio::time::timeout(Duration::from_secs(20), handle)
            .await
            .expect("the failure ends the run")
            .expect_err("e fails");
        assert!(matches!(error, RunError::Step { node: "e", .. }));
        // Every spinner that started was dropped by the time the run ended.
        let events = events.collect().await;
        let started = events
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::StepStarted { node, .. } if node != "e"))
            .count();
        assert_eq!(probe.dropped.load(Ordering::SeqCst), started);
        assert!(
            events.iter().all(|e| e.kind.node() != Some("f")),
            "what needs the failed node never started"
        );
        assert!(matches!(
            events.last().map(|e| &e.kind),
            Some(EventKind::RunFailed { node, .. }) if node == "e"
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Concurrency limit

#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

#[step]
async fn busy(ctx: &Gauge, x: u32) -> u32 {
    let now = ctx.now.fetch_add(1, Ordering::SeqCst) + 1;
    ctx.max.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    ctx.now.fetch_sub(1, Ordering::SeqCst);
    x
}

#[step]
fn sum5(v1: u32, v2: u32, v3: u32, v4: u32, v5: u32) -> u32 {
    v1 + v2 + v3 + v4 + v5
}

workflow! {
    /// Five independent busy steps.
    Five(ctx: Gauge, x: u32) -> u32 {
        let a = busy(x);
        let b = busy(x);
        let c = busy(x);
        let d = busy(x);
        let e = busy(x);
        sum5(a, b, c, d, e)
    }
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_limit_caps_steps_in_flight() {
    for parallelism in [Parallelism::Tasks, Parallelism::SingleTask] {
        let gauge = Arc::new(Gauge::default());
        let options = RunOptions::new()
            .max_concurrency(2)
            .parallelism(parallelism);
        let start = tokio::time::Instant::now();
        let output = Five::with_context(Arc::clone(&gauge))
            .with_options(options)
            .run(1)
            .await;
        assert_eq!(output.expect("succeeds"), 5);
        assert_eq!(gauge.max.load(Ordering::SeqCst), 2, "{parallelism:?}");
        // Five 100 ms steps, two at a time: three rounds.
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(300),
            "{parallelism:?}"
        );
    }
    let gauge = Arc::new(Gauge::default());
    Five::with_context(Arc::clone(&gauge))
        .run(1)
        .await
        .expect("succeeds");
    assert_eq!(gauge.max.load(Ordering::SeqCst), 5, "no limit by default");
}

// ---------------------------------------------------------------------------------------
// Failure and cancellation

#[derive(Default)]
struct Probe {
    dropped: AtomicUsize,
    finished: AtomicUsize,
}

#[derive(Debug)]
struct Broken;

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the disk is full")
    }
}

impl std::error::Error for Broken {}

#[step]
async fn fails_soon(x: u32) -> Result<u32, Broken> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _ = x;
    Err(Broken)
}

#[step]
async fn takes_an_hour(ctx: &Probe, x: u32) -> u32 {
    let _guard = DropGuard(&ctx.dropped);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    ctx.finished.fetch_add(1, Ordering::SeqCst);
    x
}

workflow! {
    /// One step fails while another is still running.
    FailFast(ctx: Probe, x: u32) -> u32 {
        let a = fails_soon(x);
        let b = takes_an_hour(x);
        add(a, b)
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_step_fails_the_run_and_cancels_the_others() {
    for parallelism in [Parallelism::Tasks, Parallelism::SingleTask] {
        let probe = Arc::new(Probe::default());
        let start = tokio::time::Instant::now();
        let handle = FailFast::with_context(Arc::clone(&probe))
            .with_options(RunOptions::new().parallelism(parallelism))
            .start(1);
        let events = handle.events();
        let error = handle.await.expect_err("fails_soon fails");
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(10),
            "nothing waits for the hour"
        );
        assert!(matches!(
            error,
            RunError::Step {
                node: "a",
                step: "fails_soon",
                ..
            }
        ));
        assert_eq!(
            error.to_string(),
            "node `a` (step `fails_soon`) failed: the disk is full"
        );
        let source = std::error::Error::source(&error).expect("the cause is kept");
        assert_eq!(source.to_string(), "the disk is full");
        assert_eq!(
            probe.dropped.load(Ordering::SeqCst),
            1,
            "the slow step was dropped once"
        );
        assert_eq!(probe.finished.load(Ordering::SeqCst), 0);

        let events = events.collect().await;
        let last = events.last().expect("events").kind.clone();
        assert_eq!(
            last,
            EventKind::RunFailed {
                node: "a".into(),
                error: "the disk is full".into(),
                duration: Duration::from_millis(10),
            }
        );
        assert!(
            events.iter().all(|e| e.kind.node() != Some("add")),
            "add never started"
        );
    }
}

workflow! {
    /// Waits an hour.
    Hour(ctx: Probe, x: u32) -> u32 {
        takes_an_hour(x)
    }
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_run_drops_its_steps_and_ends_it() {
    let probe = Arc::new(Probe::default());
    let handle = Hour::with_context(Arc::clone(&probe)).start(1);
    let mut events = handle.events();
    // Wait until the step is running.
    while let Some(event) = events.next().await {
        if matches!(event.kind, EventKind::StepStarted { .. }) {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let canceller = handle.canceller();
    canceller.cancel();
    assert!(canceller.is_cancelled());
    assert!(matches!(handle.await, Err(RunError::Cancelled)));
    assert_eq!(probe.dropped.load(Ordering::SeqCst), 1);
    assert_eq!(probe.finished.load(Ordering::SeqCst), 0);
    let rest = events.collect().await;
    assert_eq!(
        rest.last().map(|e| &e.kind),
        Some(&EventKind::RunCancelled {
            duration: Duration::from_secs(5)
        })
    );
}

workflow! {
    /// Two steps that wait an hour each, side by side: one in the run's task, one in a
    /// task of its own.
    TwoHours(ctx: Probe, x: u32) -> u32 {
        let a = takes_an_hour(x);
        let b = takes_an_hour(x);
        add(a, b)
    }
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_run_drops_the_steps_waiting_in_every_task() {
    let probe = Arc::new(Probe::default());
    let handle = TwoHours::with_context(Arc::clone(&probe)).start(1);
    let mut events = handle.events();
    let mut started = 0;
    while let Some(event) = events.next().await {
        if matches!(event.kind, EventKind::StepStarted { .. }) {
            started += 1;
            if started == 2 {
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    handle.cancel();
    assert!(matches!(handle.await, Err(RunError::Cancelled)));
    assert_eq!(
        probe.dropped.load(Ordering::SeqCst),
        2,
        "both waiting steps were dropped"
    );
    assert_eq!(probe.finished.load(Ordering::SeqCst), 0);
    let rest = events.collect().await;
    assert_eq!(
        rest.iter().map(|e| &e.kind).collect::<Vec<_>>(),
        [&EventKind::RunCancelled {
            duration: Duration::from_secs(5)
        }],
        "nothing between the steps' starts and the run's end"
    );
}

// ---------------------------------------------------------------------------------------
// Policies

#[tokio::test(start_paused = true)]
async fn failed_attempts_are_retried_with_backoff() {
    let start = tokio::time::Instant::now();
    let handle = Flaky::new(Attempts::default()).start(7);
    let events = handle.events();
    assert_eq!(handle.await.expect("third time lucky"), 7);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(100 + 150),
        "100 ms, then capped"
    );
    let events = events.collect().await;
    let retries: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepRetrying {
                attempt,
                error,
                delay,
                ..
            } => Some((*attempt, error.as_str(), *delay)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries,
        [
            (1, "attempt 1 failed", Duration::from_millis(100)),
            (2, "attempt 2 failed", Duration::from_millis(150)),
        ]
    );
}

#[step(retries = 4, backoff = "1s..8s")]
fn unreliable(ctx: &Attempts, x: u32) -> Result<u32, StepError> {
    let attempt = ctx.0.fetch_add(1, Ordering::SeqCst) + 1;
    if attempt < 5 {
        return Err(StepError::msg(format!("attempt {attempt} failed")));
    }
    Ok(x)
}

workflow! {
    /// Succeeds on the fifth attempt, with full jitter between attempts.
    Unreliable(ctx: Attempts, x: u32) -> u32 {
        unreliable(x)
    }
}

/// The delays of a run of `Unreliable` with this jitter seed, and its wall time.
async fn jittered_delays(seed: u64) -> (Vec<Duration>, Duration) {
    let start = tokio::time::Instant::now();
    let handle = Unreliable::new(Attempts::default())
        .with_options(RunOptions::new().jitter_seed(seed))
        .start(7);
    let events = handle.events();
    assert_eq!(handle.await.expect("fifth time lucky"), 7);
    let delays = events
        .collect()
        .await
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepRetrying { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    (delays, start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn full_jitter_draws_each_delay_below_its_backoff_reproducibly_from_the_seed() {
    let (delays, elapsed) = jittered_delays(7).await;
    // The backoff caps each delay: 1 s, 2 s, 4 s, 8 s.
    let caps = [1, 2, 4, 8].map(Duration::from_secs);
    assert_eq!(delays.len(), 4);
    for (delay, cap) in delays.iter().zip(caps) {
        assert!(*delay <= cap, "{delay:?} > {cap:?}");
    }
    // The run waited exactly the delays it reported.
    assert_eq!(elapsed, delays.iter().sum::<Duration>());
    // The same seed gives the same delays; another seed, others.
    assert_eq!(jittered_delays(7).await.0, delays);
    assert_ne!(jittered_delays(8).await.0, delays);
    // Jitter spreads the delays: not all of them sit at the cap.
    assert!(delays.iter().zip(caps).any(|(delay, cap)| *delay < cap));
    insta::assert_debug_snapshot!(delays);
}

#[step(retries = 5)]
fn rejected(x: u32) -> Result<u32, StepError> {
    let _ = x;
    Err(StepError::msg("400 bad request").permanent())
}

workflow! {
    /// Fails permanently.
    Rejected(x: u32) -> u32 {
        rejected(x)
    }
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let handle = Rejected::new().start(1);
    let events = handle.events();
    let error = handle.await.expect_err("permanent");
    let RunError::Step { source, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(source.kind(), ErrorKind::Permanent);
    assert_eq!(steps_started(&events.collect().await), 1);
}

#[step(timeout = "1s", retries = 1, backoff = "10ms..10ms", jitter = "none")]
async fn hangs(ctx: &Probe, x: u32) -> u32 {
    let _guard = DropGuard(&ctx.dropped);
    tokio::time::sleep(Duration::from_secs(60)).await;
    x
}

workflow! {
    /// Never finishes in time.
    Hangs(ctx: Probe, x: u32) -> u32 {
        hangs(x)
    }
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_cancelled_and_counts_as_a_failure() {
    let probe = Arc::new(Probe::default());
    let start = tokio::time::Instant::now();
    let error = Hangs::with_context(Arc::clone(&probe))
        .run(1)
        .await
        .expect_err("times out twice");
    assert_eq!(start.elapsed(), Duration::from_millis(2010));
    assert_eq!(
        probe.dropped.load(Ordering::SeqCst),
        2,
        "each attempt was dropped"
    );
    let RunError::Step { source, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(source.kind(), ErrorKind::TimedOut);
    assert_eq!(error.to_string(), "step `hangs` failed: timed out after 1s");
}

#[step(retries = 5, backoff = "10s..10s", jitter = "none")]
fn always_fails(ctx: &Attempts, x: u32) -> Result<u32, StepError> {
    ctx.0.fetch_add(1, Ordering::SeqCst);
    Err(StepError::msg(format!("no luck with {x}")))
}

workflow! {
    /// Fails every attempt, waiting 10 s between them.
    AlwaysFails(ctx: Attempts, x: u32) -> u32 {
        always_fails(x)
    }
}

#[tokio::test(start_paused = true)]
async fn cancelling_during_a_backoff_sleep_fires_no_retry() {
    let attempts = Arc::new(Attempts::default());
    let start = tokio::time::Instant::now();
    let handle = AlwaysFails::with_context(Arc::clone(&attempts)).start(1);
    let mut events = handle.events();
    while let Some(event) = events.next().await {
        if matches!(event.kind, EventKind::StepRetrying { .. }) {
            break;
        }
    }
    handle.cancel();
    assert!(matches!(handle.await, Err(RunError::Cancelled)));
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the backoff sleep was cut short"
    );
    // Even once the backoff would have ended, no attempt starts.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(attempts.0.load(Ordering::SeqCst), 1);
    let rest: Vec<_> = events.collect().await.into_iter().map(|e| e.kind).collect();
    assert!(
        matches!(rest.as_slice(), [EventKind::RunCancelled { .. }]),
        "{rest:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_past_its_deadline_fails_and_drops_its_steps() {
    let probe = Arc::new(Probe::default());
    let start = tokio::time::Instant::now();
    let handle = Hangs::with_context(Arc::clone(&probe))
        .with_options(RunOptions::new().deadline(Duration::from_millis(1500)))
        .start(1);
    let events = handle.events();
    let error = handle.await.expect_err("the deadline passes first");
    assert!(
        matches!(error, RunError::DeadlineExceeded { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the run did not finish within its deadline of 1.5s"
    );
    // The first attempt timed out at 1 s, the retry was in flight at 1.5 s and dropped.
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    assert_eq!(probe.dropped.load(Ordering::SeqCst), 2);
    let events = events.collect().await;
    assert!(matches!(
        events.last().map(|e| &e.kind),
        Some(EventKind::RunFailed { error, .. }) if error.contains("deadline")
    ));
}

#[step]
fn panics(x: u32) -> u32 {
    assert!(x > 100, "x is too small");
    x
}

workflow! {
    /// Panics.
    Panics(x: u32) -> u32 {
        panics(x)
    }
}

#[tokio::test]
async fn a_panicking_step_fails_the_run_instead_of_the_process() {
    for parallelism in [Parallelism::Tasks, Parallelism::SingleTask] {
        let error = Panics::new()
            .with_options(RunOptions::new().parallelism(parallelism))
            .run(1)
            .await
            .expect_err("panics");
        assert_eq!(
            error.to_string(),
            "step `panics` failed: panicked: x is too small"
        );
    }
}

#[test]
fn run_ids_are_version_7_uuids_in_the_order_they_were_made() {
    let ids: Vec<RunId> = (0..10_000).map(|_| RunId::new()).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ids sort by creation"
    );
    for id in &ids[..10] {
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "7", "version 7: {text}");
        assert!("89ab".contains(&text[19..20]), "RFC 4122 variant: {text}");
        assert_eq!(text.parse::<RunId>().expect("parses back"), *id);
    }
    // The first 48 bits are the Unix time in milliseconds.
    let millis = u64::from_str_radix(&ids[0].to_string().replace('-', "")[..12], 16).expect("hex");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let now = u64::try_from(now).expect("fits");
    assert!(
        now.abs_diff(millis) < 60_000,
        "{millis} is about now ({now})"
    );
}
