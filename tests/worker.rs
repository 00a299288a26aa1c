//! Workers sharing PostgreSQL, in one test process: runs submitted to the queue are run by
//! several workers, each node exactly once; a node's result is recorded only under the
//! lease it was claimed with; concurrency limits hold across workers; a failing node ends
//! its run; a pause waits for its answer. Skipped with a notice without `WORKFLOW_PG_URL`.

// Steps borrow their inputs as the producing node's output type.
#![allow(clippy::ptr_arg, clippy::trivially_copy_pass_by_ref)]

#[path = "support/pg.rs"]
mod pg;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use workflow::RunId;
use workflow::prelude::*;
use workflow::store::{Limit, PostgresStore, RunStatus, Store, TaskQueue as _};
use workflow::worker::{Worker, WorkerStatsHandle};

/// What the steps of one worker share: who the worker is, what ran, and how many `slow`
/// steps are in flight.
#[derive(Default)]
struct Shop {
    name: String,
    journal: Arc<Mutex<Vec<String>>>,
    slow_now: Arc<AtomicUsize>,
    slow_max: Arc<AtomicUsize>,
    /// How long `stamp` sleeps on this worker.
    stamp_delay: Duration,
}

impl Shop {
    fn named(name: &str, journal: &Arc<Mutex<Vec<String>>>) -> Self {
        Self {
            name: name.to_owned(),
            journal: Arc::clone(journal),
            ..Self::default()
        }
    }

    fn ran(&self) {
        let key = workflow::idempotency_key().expect("inside a step");
        self.journal
            .lock()
            .unwrap()
            .push(format!("{key} {}", self.name));
    }
}

#[step]
fn order(ctx: &Shop, n: &u32) -> u32 {
    ctx.ran();
    *n
}

#[step]
async fn price(ctx: &Shop, n: &u32) -> u32 {
    ctx.ran();
    tokio::time::sleep(Duration::from_millis(5)).await;
    n * 10
}

/// Fails for odd orders; the workflow skips it then.
#[step(retries = 0)]
fn coupon(ctx: &Shop, n: &u32) -> Result<u32, StepError> {
    ctx.ran();
    if n % 2 == 1 {
        return Err(StepError::msg("no coupon for odd orders").permanent());
    }
    Ok(n / 2)
}

#[step]
fn wrap(ctx: &Shop, coupon: &u32) -> String {
    ctx.ran();
    format!("coupon {coupon}")
}

#[step]
fn invoice(ctx: &Shop, price: &u32, coupon: Option<&u32>) -> String {
    ctx.ran();
    format!("{price} - {}", coupon.copied().unwrap_or(0))
}

workflow! {
    Checkout(ctx: Shop, n: u32) -> String {
        let order = order(n);
        let price = price(order);
        #[node(on_failure = skip)]
        let coupon = coupon(order);
        let _ = wrap(coupon);
        invoice(price, coupon.ok())
    }
}

#[step]
async fn slow(ctx: &Shop, n: &u32) -> u32 {
    ctx.ran();
    let now = ctx.slow_now.fetch_add(1, Ordering::SeqCst) + 1;
    ctx.slow_max.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(60)).await;
    ctx.slow_now.fetch_sub(1, Ordering::SeqCst);
    *n
}

workflow! {
    Throttled(ctx: Shop, n: u32) -> u32 {
        let a = slow(n);
        a
    }
}

/// Its output says which worker recorded it.
#[step]
async fn stamp(ctx: &Shop, n: &u32) -> String {
    ctx.ran();
    tokio::time::sleep(ctx.stamp_delay).await;
    format!("{n} by {}", ctx.name)
}

workflow! {
    Stamped(ctx: Shop, n: u32) -> String {
        let s = stamp(n);
        s
    }
}

#[step(retries = 0)]
fn explode(ctx: &Shop, n: &u32) -> Result<u32, StepError> {
    ctx.ran();
    Err(StepError::msg(format!("order {n} exploded")).permanent())
}

workflow! {
    Exploding(ctx: Shop, n: u32) -> u32 {
        let order = order(n);
        let price = price(order);
        let boom = explode(order);
        let _ = wrap(boom);
        price
    }
}

/// A draft a state graph revises until its score reaches its goal.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Draft {
    score: u32,
    goal: u32,
    log: Vec<String>,
}

#[step]
fn write(ctx: &Shop, draft: &mut Draft) {
    ctx.ran();
    draft.log.push(format!("written by {}", ctx.name));
}

#[step]
fn review(ctx: &Shop, draft: &mut Draft) -> bool {
    ctx.ran();
    draft.score >= draft.goal
}

#[step]
async fn revise(ctx: &Shop, draft: &mut Draft) {
    ctx.ran();
    tokio::time::sleep(Duration::from_millis(2)).await;
    draft.score += 1;
    draft.log.push("revised".to_owned());
}

workflow! {
    Revision(ctx: Shop, draft: &mut Draft) {
        write -> review;
        review => match {
            true => END,
            false => revise,
        } max 5 => END;
        revise -> review;
    }
}

#[step]
fn compose(ctx: &Shop, n: &u32) -> String {
    ctx.ran();
    format!("post {n}")
}

/// Asks an editor.
#[step]
fn approval(post: &String) -> Pause<String, bool> {
    Pause::new(post.clone())
}

#[step]
fn release(ctx: &Shop, post: &String, approved: &bool) -> String {
    ctx.ran();
    if *approved {
        format!("{post} published by {}", ctx.name)
    } else {
        "dropped".to_owned()
    }
}

workflow! {
    Editorial(ctx: Shop, n: u32) -> String {
        let post = compose(n);
        let approved = approval(post);
        release(post, approved)
    }
}

/// A running worker, stopped by [`Running::stop`].
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), RunError>>,
    stats: WorkerStatsHandle,
}

impl Running {
    fn start(worker: Worker) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stats = worker.stats();
        let task = tokio::spawn(worker.run_until(stopped));
        Self { stop, task, stats }
    }

    async fn stop(self) -> workflow::worker::WorkerStats {
        let _ = self.stop.send(());
        self.task.await.expect("joined").expect("the worker ran");
        self.stats.get()
    }
}

/// Waits until every run has ended; returns their records' statuses.
async fn ended(store: &PostgresStore, ids: &[RunId]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for &id in ids {
        loop {
            let status = store.run(id).await.expect("stored").status;
            if status.is_final() || status == RunStatus::Waiting {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {id} did not end"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A run's stored event kinds, checked to be numbered 0, 1, 2, ...
async fn kinds(store: &PostgresStore, id: RunId) -> Vec<String> {
    let events = store.events(id, 0).await.expect("events");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, i as u64, "run {id}'s log has a gap");
    }
    events
        .iter()
        .map(|event| {
            let json = serde_json::to_value(&event.kind).unwrap();
            let kind = json["event"].as_str().unwrap_or_default().to_owned();
            match event.kind.node() {
                Some(node) => format!("{kind} {node}"),
                None => kind,
            }
        })
        .collect()
}

/// How often each `<run>/<node>` ran, from a journal.
fn executions(journal: &Mutex<Vec<String>>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in journal.lock().unwrap().iter() {
        let key = line.split(' ').next().unwrap_or_default().to_owned();
        *counts.entry(key).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_submitted_runs_and_run_each_node_once() {
    let Some(schema) = pg::PgSchema::new("workers_share_submitted_runs_and_run_each_node_once")
    else {
        return;
    };
    let store = schema.store().await;
    let journal = Arc::default();
    let submitter = Durable::new(
        Checkout::with_context(Arc::new(Shop::named("submitter", &journal))),
        store.clone(),
    );
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(submitter.submit(n).await.expect("submitted"));
    }
    // A run that workers run is theirs: no process resumes it meanwhile.
    let error = submitter.resume(ids[39]).await.unwrap_err();
    assert!(
        error.to_string().ends_with(
            "cannot resume: workers run it (its nodes are queued); resume is for a run whose process died"
        ),
        "{error}"
    );
    let workers: Vec<Running> = ["a", "b", "c"]
        .into_iter()
        .map(|name| {
            Running::start(
                Worker::new(store.clone())
                    .name(name)
                    .workflow(Checkout::with_context(Arc::new(Shop::named(
                        name, &journal,
                    ))))
                    .concurrency(4)
                    .poll_every(Duration::from_millis(10)),
            )
        })
        .collect();
    ended(&store, &ids).await;
    let mut completed = 0;
    for worker in workers {
        let stats = worker.stop().await;
        assert_eq!((stats.lost, stats.errors, stats.taken_over), (0, 0, 0));
        completed += stats.completed;
    }
    // 5 nodes and the run's end for even orders; odd ones skip `wrap` with `coupon`.
    assert_eq!(completed, 20 * 6 + 20 * 5);

    let local = Checkout::with_context(Arc::new(Shop::named("local", &Arc::default())));
    for (n, &id) in ids.iter().enumerate() {
        let record = store.run(id).await.unwrap();
        assert_eq!(record.status, RunStatus::Succeeded, "run {n}: {record:?}");
        let expected = local.run(u32::try_from(n).unwrap()).await.unwrap();
        assert_eq!(record.output, Some(serde_json::json!(expected)), "run {n}");
        let kinds = kinds(&store, id).await;
        assert_eq!(kinds.first().map(String::as_str), Some("run_started"));
        assert_eq!(kinds.last().map(String::as_str), Some("run_finished"));
        if n % 2 == 1 {
            assert!(
                kinds.contains(&"step_skipped coupon".to_owned()),
                "{kinds:?}"
            );
            assert!(kinds.contains(&"step_skipped wrap".to_owned()), "{kinds:?}");
        }
        let succeeded = kinds.iter().filter(|k| k.starts_with("step_succeeded"));
        assert_eq!(
            succeeded.count(),
            if n % 2 == 0 { 5 } else { 3 },
            "{kinds:?}"
        );
    }
    let counts = executions(&journal);
    assert_eq!(counts.len(), 20 * 5 + 20 * 4, "every node ran");
    assert!(
        counts.values().all(|&n| n == 1),
        "a node ran twice: {counts:?}"
    );
    // Every worker took a share.
    let lines = journal.lock().unwrap().clone();
    for name in ["a", "b", "c"] {
        assert!(lines.iter().any(|line| line.ends_with(&format!(" {name}"))));
    }
    assert_eq!(store.pending().await.unwrap(), 0, "nothing left queued");
    schema.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_outlives_its_lease_cannot_record_over_the_new_owner() {
    let Some(schema) = pg::PgSchema::new("a_step_that_outlives_its_lease") else {
        return;
    };
    let store = schema.store().await;
    let journal = Arc::default();
    let id = Durable::new(
        Stamped::with_context(Arc::new(Shop::named("submitter", &journal))),
        store.clone(),
    )
    .submit(7)
    .await
    .unwrap();
    // Worker A sleeps in the step past its lease, and does not renew it in time.
    let stalled = Running::start(
        Worker::new(store.clone())
            .name("a")
            .workflow(Stamped::with_context(Arc::new(Shop {
                stamp_delay: Duration::from_millis(1500),
                ..Shop::named("a", &journal)
            })))
            .lease(Duration::from_millis(300))
            .renew_every(Duration::from_secs(3600))
            .poll_every(Duration::from_millis(10)),
    );
    while journal.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Worker B takes the node over once A's lease has expired, and records its result.
    let fresh = Running::start(
        Worker::new(store.clone())
            .name("b")
            .workflow(Stamped::with_context(Arc::new(Shop::named("b", &journal))))
            .lease(Duration::from_secs(10))
            .poll_every(Duration::from_millis(10)),
    );
    ended(&store, &[id]).await;
    let record = store.run(id).await.unwrap();
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_eq!(record.output, Some(serde_json::json!("7 by b")));
    // A wakes after B has recorded the node: its result is refused.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let a = stalled.stop().await;
    let b = fresh.stop().await;
    // A lost its node to B. (The run's end is a task either worker may take; on a
    // loaded machine A may lose that one too, its lease being short.)
    assert!(a.lost >= 1, "{a:?}");
    assert!(b.taken_over >= 1, "{b:?}");
    let checkpoints = store.checkpoints(id).await.unwrap();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].output, serde_json::json!("7 by b"));
    let runs: Vec<String> = journal.lock().unwrap().clone();
    assert_eq!(runs, [format!("{id}/s a"), format!("{id}/s b")]);
    kinds(&store, id).await;
    schema.remove().await;
}

/// Runs 12 runs of `Throttled` on three workers of 4 slots each under `limit`; returns how
/// many `slow` steps ran at once at most.
async fn most_at_once(test: &str, limit: &Limit) -> Option<usize> {
    let schema = pg::PgSchema::new(test)?;
    let store = schema.store().await;
    let journal = Arc::default();
    let shared = Shop::named("submitter", &journal);
    let (now, max) = (Arc::clone(&shared.slow_now), Arc::clone(&shared.slow_max));
    let submitter = Durable::new(Throttled::with_context(Arc::new(shared)), store.clone());
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(submitter.submit(n).await.unwrap());
    }
    let workers: Vec<Running> = ["a", "b", "c"]
        .into_iter()
        .map(|name| {
            let shop = Shop {
                slow_now: Arc::clone(&now),
                slow_max: Arc::clone(&max),
                ..Shop::named(name, &journal)
            };
            Running::start(
                Worker::new(store.clone())
                    .name(name)
                    .workflow(Throttled::with_context(Arc::new(shop)))
                    .concurrency(4)
                    .limit(limit.clone())
                    .poll_every(Duration::from_millis(5)),
            )
        })
        .collect();
    ended(&store, &ids).await;
    for worker in workers {
        worker.stop().await;
    }
    for &id in &ids {
        assert_eq!(store.run(id).await.unwrap().status, RunStatus::Succeeded);
    }
    schema.remove().await;
    Some(max.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_limit_holds_across_workers() {
    let limit = Limit::Step("slow".to_owned(), 2);
    if let Some(most) = most_at_once("a_step_limit_holds_across_workers", &limit).await {
        assert_eq!(
            most, 2,
            "at most 2 `slow` steps at once, and 2 did run together"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_limit_holds_across_workers() {
    let limit = Limit::Workflow("Throttled".to_owned(), 3);
    if let Some(most) = most_at_once("a_workflow_limit_holds_across_workers", &limit).await {
        assert_eq!(
            most, 3,
            "at most 3 nodes of `Throttled` at once, and 3 did run together"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_node_ends_its_run_and_drops_its_other_tasks() {
    let Some(schema) = pg::PgSchema::new("a_failing_node_ends_its_run") else {
        return;
    };
    let store = schema.store().await;
    let journal = Arc::default();
    let id = Durable::new(
        Exploding::with_context(Arc::new(Shop::named("submitter", &journal))),
        store.clone(),
    )
    .submit(3)
    .await
    .unwrap();
    let worker = Running::start(
        Worker::new(store.clone())
            .workflow(Exploding::with_context(Arc::new(Shop::named(
                "a", &journal,
            ))))
            .poll_every(Duration::from_millis(10)),
    );
    ended(&store, &[id]).await;
    worker.stop().await;
    let record = store.run(id).await.unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    assert_eq!(
        record.error.as_deref(),
        Some("node `boom` (step `explode`) failed: order 3 exploded")
    );
    let kinds = kinds(&store, id).await;
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("run_failed"),
        "{kinds:?}"
    );
    assert!(!kinds.iter().any(|k| k.ends_with(" wrap")), "{kinds:?}");
    assert_eq!(store.pending().await.unwrap(), 0);
    schema.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_a_queue_is_refused() {
    let journal = Arc::default();
    let durable = Durable::new(
        Checkout::with_context(Arc::new(Shop::named("a", &journal))),
        workflow::store::MemoryStore::new(),
    );
    let error = durable.submit(1).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "this store has no work queue: workers share a PostgreSQL store (`PostgresStore`)"
    );
    let worker = Worker::new(workflow::store::MemoryStore::new())
        .workflow(Checkout::with_context(Arc::new(Shop::named("a", &journal))));
    let error = worker
        .run_until(std::future::pending::<()>())
        .await
        .unwrap_err();
    assert!(matches!(error, RunError::Unsupported(_)), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_run_a_state_graph_one_node_at_a_time_from_its_stored_state() {
    let Some(schema) = pg::PgSchema::new("workers_run_a_state_graph") else {
        return;
    };
    let store = schema.store().await;
    let journal = Arc::default();
    let submitter = Durable::new(
        Revision::with_context(Arc::new(Shop::named("submitter", &journal))),
        store.clone(),
    )
    .keep_history();
    let draft = |goal: u32| Draft {
        score: 0,
        goal,
        log: Vec::new(),
    };
    let mut ids = Vec::new();
    for goal in 0..6 {
        ids.push(submitter.submit(draft(goal % 3)).await.unwrap());
    }
    let workers: Vec<Running> = ["a", "b"]
        .into_iter()
        .map(|name| {
            Running::start(
                Worker::new(store.clone())
                    .name(name)
                    .workflow(Revision::with_context(Arc::new(Shop::named(
                        name, &journal,
                    ))))
                    .poll_every(Duration::from_millis(5)),
            )
        })
        .collect();
    ended(&store, &ids).await;
    for worker in workers {
        let stats = worker.stop().await;
        assert_eq!((stats.lost, stats.errors), (0, 0), "{stats:?}");
    }
    for (goal, &id) in ids.iter().enumerate() {
        let goal = u32::try_from(goal).unwrap() % 3;
        let record = store.run(id).await.unwrap();
        assert_eq!(record.status, RunStatus::Succeeded, "{record:?}");
        let output: Draft = serde_json::from_value(record.output.unwrap()).unwrap();
        assert_eq!(output.score, goal);
        assert_eq!(output.log.len(), 1 + goal as usize);
        let kinds = kinds(&store, id).await;
        // write, then a review per revision and one more; the routes between them.
        let reviews = kinds
            .iter()
            .filter(|k| *k == "step_succeeded review")
            .count();
        assert_eq!(reviews, 1 + goal as usize, "{kinds:?}");
        assert!(kinds.contains(&"routed review".to_owned()), "{kinds:?}");
        assert_eq!(kinds.first().map(String::as_str), Some("run_started"));
        assert_eq!(kinds.last().map(String::as_str), Some("run_finished"));
        // The workers kept its history: a state after every node, the last the output.
        let history = submitter.history(id).await.unwrap();
        assert_eq!(history.len(), 2 + 2 * goal as usize);
        assert_eq!(history.last().map(|h| &h.state), Some(&output));
        assert_eq!(history[0].node, "write");
    }
    // Every node ran once per visit: write once, review 1 + goal times, revise goal times.
    let lines = journal.lock().unwrap().len();
    assert_eq!(lines, (0..6).map(|g| 2 + 2 * (g % 3)).sum::<usize>());
    assert_eq!(store.pending().await.unwrap(), 0);
    schema.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_pause_goes_back_to_the_workers_and_a_followed_run_can_be_cancelled() {
    let Some(schema) = pg::PgSchema::new("an_answered_pause_goes_back_to_the_workers") else {
        return;
    };
    let store = schema.store().await;
    let journal = Arc::default();
    let editor = Durable::new(
        Editorial::with_context(Arc::new(Shop::named("editor", &journal))),
        store.clone(),
    );
    let id = editor.submit(4).await.unwrap();
    let worker = Running::start(
        Worker::new(store.clone())
            .name("w")
            .workflow(Editorial::with_context(Arc::new(Shop::named(
                "w", &journal,
            ))))
            .poll_every(Duration::from_millis(10)),
    );
    ended(&store, &[id]).await;
    assert_eq!(store.run(id).await.unwrap().status, RunStatus::Waiting);
    // Following it from here: it waits for the editor.
    let error = editor.follow(id).await.unwrap().await.unwrap_err();
    assert!(
        matches!(&error, RunError::Waiting { node: "approved", request } if request == "post 4"),
        "{error:?}"
    );
    // The editor's answer sends the run back to the workers; this process follows it.
    let handle = editor.answer::<approval>(id, true).await.unwrap();
    let events = handle.events();
    assert_eq!(handle.await.unwrap(), "post 4 published by w");
    let seen: Vec<u64> = futures_util::StreamExt::collect::<Vec<_>>(events)
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    // From the answer on, every stored event, in order.
    let stored = store.events(id, 0).await.unwrap();
    let answered = stored
        .iter()
        .position(|e| matches!(e.kind, workflow::EventKind::Answered { .. }))
        .unwrap() as u64;
    assert_eq!(seen, (answered..stored.len() as u64).collect::<Vec<_>>());
    assert!(matches!(
        stored.last().map(|e| &e.kind),
        Some(workflow::EventKind::RunFinished { .. })
    ));
    assert_eq!(
        journal
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.ends_with(" editor"))
            .count(),
        0,
        "the editor's process ran no step"
    );

    // A followed run can be cancelled: the store records it, the workers drop its tasks.
    let slow = Durable::new(
        Editorial::with_context(Arc::new(Shop::named("editor", &journal))),
        store.clone(),
    )
    .submit(5)
    .await
    .unwrap();
    worker.stop().await;
    let handle = editor.follow(slow).await.unwrap();
    handle.cancel();
    assert!(matches!(handle.await, Err(RunError::Cancelled)));
    assert_eq!(store.run(slow).await.unwrap().status, RunStatus::Cancelled);
    assert_eq!(store.queued(slow).await.unwrap(), 0);
    kinds(&store, slow).await;
    schema.remove().await;
}
