//! Durable runs: checkpoints, resuming after a simulated crash, refused resumes, and the
//! idempotency key, on the in-memory store and on SQLite.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use workflow::prelude::*;
use workflow::store::{
    CacheKey, Checkpoint, Interrupt, MemoryStore, Progress, RunRecord, RunStatus, SqliteStore,
    StateChange, StateCheckpoint, Store, StoreFuture, Timestamp,
};
use workflow::{Event, EventKind, RunId, idempotency_key};

/// Counts executions of each step, and the idempotency keys they saw.
#[derive(Default)]
pub struct Probe {
    runs: Mutex<Vec<(String, String)>>,
    /// While set, `slow` blocks forever (a process that is about to be killed).
    hang: std::sync::atomic::AtomicBool,
}

impl Probe {
    fn record(&self, step: &str) {
        let key = idempotency_key().expect("inside a step");
        self.runs.lock().unwrap().push((step.to_owned(), key));
    }

    fn count(&self, step: &str) -> usize {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s == step)
            .count()
    }

    fn keys(&self, step: &str) -> Vec<String> {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s == step)
            .map(|(_, key)| key.clone())
            .collect()
    }
}

#[step]
fn fetch(ctx: &Probe, n: u32) -> u32 {
    ctx.record("fetch");
    n + 1
}

#[step]
fn enrich(ctx: &Probe, n: u32) -> String {
    ctx.record("enrich");
    format!("item-{n}")
}

#[step]
async fn slow(ctx: &Probe, n: u32) -> u32 {
    ctx.record("slow");
    while ctx.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    n * 10
}

#[step]
#[allow(clippy::ptr_arg)]
fn combine(ctx: &Probe, label: &String, big: u32) -> String {
    ctx.record("combine");
    format!("{label}:{big}")
}

workflow! {
    /// fetch feeds enrich and slow; combine joins them.
    pub Items(ctx: Probe, n: u32) -> String {
        let fetched = fetch(n);
        let label = enrich(fetched);
        let big = slow(fetched);
        combine(label, big)
    }
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("workflow-durable-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("runs.db")
}

async fn assert_gapless(store: &dyn Store, id: RunId) -> Vec<Event> {
    let events = store.events(id, 0).await.unwrap();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, i as u64, "events are numbered without gaps");
    }
    events
}

/// Checkpoints and events of an uninterrupted durable run.
async fn completes_and_checkpoints(store: Arc<dyn Store>) {
    let probe = Arc::new(Probe::default());
    let durable = Durable::with_shared_store(Items::with_context(Arc::clone(&probe)), store);
    let handle = durable.start(1).await.unwrap();
    let id = handle.id();
    let live = handle.events();
    assert_eq!(handle.await.unwrap(), "item-2:20");

    let store = durable.store();
    let record = store.run(id).await.unwrap();
    assert_eq!(record.workflow, "Items");
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_eq!(record.input, serde_json::json!(1));
    assert_eq!(record.output, Some(serde_json::json!("item-2:20")));
    assert_eq!(record.graph_hash, Items::graph().structural_hash());
    let mut nodes: Vec<_> = store
        .checkpoints(id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.node, c.output, c.attempts))
        .collect();
    nodes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        nodes,
        [
            ("big".to_owned(), serde_json::json!(20), 1),
            ("combine".to_owned(), serde_json::json!("item-2:20"), 1),
            ("fetched".to_owned(), serde_json::json!(2), 1),
            ("label".to_owned(), serde_json::json!("item-2"), 1),
        ]
    );
    let stored = assert_gapless(&**store, id).await;
    // Compared as stored: times in whole microseconds.
    let json = |events: &[Event]| serde_json::to_value(events).unwrap();
    assert_eq!(
        json(&stored),
        json(&live.collect().await),
        "the store has every event"
    );
    assert_eq!(probe.count("fetch"), 1);
}

#[tokio::test]
async fn a_durable_run_stores_every_checkpoint_and_event_in_memory() {
    completes_and_checkpoints(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_durable_run_stores_every_checkpoint_and_event_in_sqlite() {
    let store = SqliteStore::open(temp_db("complete")).unwrap();
    completes_and_checkpoints(Arc::new(store)).await;
}

/// Starts a run in a runtime of its own and drops that runtime once `fetch`, `enrich`
/// are checkpointed while `slow` hangs: what a killed process leaves behind.
fn crash_mid_run(store: &Arc<dyn Store>, probe: &Arc<Probe>) -> RunId {
    probe.hang.store(true, Ordering::SeqCst);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let durable =
        Durable::with_shared_store(Items::with_context(Arc::clone(probe)), Arc::clone(store));
    let id = runtime.block_on(async {
        let handle = durable.start(4).await.unwrap();
        let id = handle.id();
        loop {
            let done = store.checkpoints(id).await.unwrap();
            if done.len() == 2 && probe.count("slow") == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        id
    });
    runtime.shutdown_background();
    probe.hang.store(false, Ordering::SeqCst);
    id
}

async fn resumes_after_a_crash(store: Arc<dyn Store>) {
    let probe = Arc::new(Probe::default());
    let id = tokio::task::spawn_blocking({
        let (store, probe) = (Arc::clone(&store), Arc::clone(&probe));
        move || crash_mid_run(&store, &probe)
    })
    .await
    .unwrap();
    assert_eq!(store.run(id).await.unwrap().status, RunStatus::Running);

    let durable =
        Durable::with_shared_store(Items::with_context(Arc::clone(&probe)), Arc::clone(&store));
    let output = durable.resume(id).await.unwrap().await.unwrap();
    assert_eq!(output, "item-5:50");
    assert_eq!(
        probe.count("fetch"),
        1,
        "a completed node is loaded, not re-run"
    );
    assert_eq!(probe.count("enrich"), 1);
    assert_eq!(probe.count("slow"), 2, "the node in flight runs again");
    assert_eq!(probe.count("combine"), 1);
    let keys = probe.keys("slow");
    assert_eq!(keys[0], keys[1], "the idempotency key survives the crash");
    assert_eq!(keys[0], format!("{id}/big"));

    let events = assert_gapless(&*store, id).await;
    let kinds: Vec<_> = events
        .iter()
        .map(|e| match &e.kind {
            EventKind::RunStarted { .. } => "run_started".to_owned(),
            EventKind::RunResumed { restored, .. } => format!("run_resumed {restored}"),
            EventKind::StepSucceeded { node, .. } => format!("ok {node}"),
            EventKind::RunFinished { .. } => "run_finished".to_owned(),
            _ => String::new(),
        })
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("run_started"));
    assert!(kinds.contains(&"run_resumed 2".to_owned()), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("run_finished"));
    assert_eq!(store.run(id).await.unwrap().status, RunStatus::Succeeded);

    let again = durable.resume(id).await.unwrap_err();
    assert!(matches!(again, RunError::NotResumable { .. }), "{again}");
    assert_eq!(
        again.to_string(),
        format!("run {id} cannot resume: it has ended (succeeded)")
    );
}

#[tokio::test]
async fn a_crashed_run_resumes_in_memory() {
    resumes_after_a_crash(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_crashed_run_resumes_from_sqlite_after_reopening() {
    let path = temp_db("crash");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let probe = Arc::new(Probe::default());
    let id = tokio::task::spawn_blocking({
        let (store, probe) = (Arc::clone(&store), Arc::clone(&probe));
        move || crash_mid_run(&store, &probe)
    })
    .await
    .unwrap();
    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();
    let durable = Durable::new(Items::with_context(Arc::clone(&probe)), reopened);
    assert_eq!(
        durable.resume(id).await.unwrap().await.unwrap(),
        "item-5:50"
    );
    assert_eq!(probe.count("fetch"), 1);
    assert_eq!(probe.count("combine"), 1);
    resumes_after_a_crash(Arc::new(SqliteStore::open(temp_db("crash2")).unwrap())).await;
}

#[tokio::test]
async fn a_changed_workflow_refuses_to_resume_a_run() {
    let store = Arc::new(MemoryStore::new());
    let id = RunId::new();
    let record = RunRecord::new(id, "Items", "0123456789abcdef", serde_json::json!(1));
    store.create_run(record).await.unwrap();
    let durable = Durable::with_shared_store(Items::new(Probe::default()), store.clone());
    let error = durable.resume(id).await.unwrap_err();
    let current = Items::graph().structural_hash();
    assert_eq!(
        error.to_string(),
        format!(
            "run {id} was started by a different version of `Items` (graph hash 0123456789abcdef, this program has {current}): it cannot resume under the changed graph; finish it with the program that started it, or start a new run"
        )
    );
    assert!(store.checkpoints(id).await.unwrap().is_empty());
    assert!(store.events(id, 0).await.unwrap().is_empty());
    assert_eq!(store.run(id).await.unwrap().status, RunStatus::Running);
}

#[tokio::test]
async fn unknown_foreign_and_undecodable_runs_are_refused() {
    let store = Arc::new(MemoryStore::new());
    let durable = Durable::with_shared_store(Items::new(Probe::default()), store.clone());
    let unknown = RunId::new();
    assert_eq!(
        durable.resume(unknown).await.unwrap_err().to_string(),
        format!("run {unknown} cannot resume: no run has this id")
    );

    let foreign = RunId::new();
    let record = RunRecord::new(foreign, "Other", "x", serde_json::json!(1));
    store.create_run(record).await.unwrap();
    assert_eq!(
        durable.resume(foreign).await.unwrap_err().to_string(),
        format!("run {foreign} cannot resume: it is a run of `Other`, not of `Items`")
    );

    let garbled = RunId::new();
    let hash = Items::graph().structural_hash();
    let record = RunRecord::new(garbled, "Items", hash, serde_json::json!("not a number"));
    store.create_run(record).await.unwrap();
    let error = durable.resume(garbled).await.unwrap_err();
    assert!(
        error.to_string().starts_with(&format!(
            "the stored input of run {garbled} has the wrong type"
        )),
        "{error}"
    );
}

// A state graph: loop counters and the state survive a crash.

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Draft {
    pub text: String,
    pub revisions: u32,
}

static WRITES: AtomicU32 = AtomicU32::new(0);
static HANG_AT: AtomicU32 = AtomicU32::new(u32::MAX);

#[step]
async fn write(draft: &mut Draft) {
    let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    while n == HANG_AT.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    draft.revisions += 1;
    draft.text.push('w');
}

#[step]
fn review(draft: &mut Draft) -> bool {
    draft.text.push('r');
    false
}

workflow! {
    /// Writes and reviews, never satisfied: the loop bound ends it.
    pub Revise(draft: &mut Draft) {
        write -> review;
        review => match {
            true => END,
            false => write,
        } max 3 => END;
    }
}

#[tokio::test]
async fn a_state_graph_resumes_after_its_last_checkpoint_with_its_loop_counters() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(temp_db("state")).unwrap());
    // The second `write` hangs: the first write and review are checkpointed.
    HANG_AT.store(2, Ordering::SeqCst);
    let id = tokio::task::spawn_blocking({
        let store = Arc::clone(&store);
        move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let durable = Durable::with_shared_store(Revise::new(), Arc::clone(&store));
            let id = runtime.block_on(async {
                let handle = durable.start(Draft::default()).await.unwrap();
                let id = handle.id();
                while WRITES.load(Ordering::SeqCst) < 2 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                id
            });
            runtime.shutdown_background();
            id
        }
    })
    .await
    .unwrap();
    let saved = store.state(id).await.unwrap().expect("a state checkpoint");
    assert_eq!(saved.step, 2);
    assert_eq!(saved.node, "review");
    assert_eq!(saved.next.as_deref(), Some("write"));
    assert_eq!(
        saved.state,
        serde_json::json!({"text": "wr", "revisions": 1})
    );
    HANG_AT.store(u32::MAX, Ordering::SeqCst);

    let durable = Durable::with_shared_store(Revise::new(), Arc::clone(&store));
    let draft = durable.resume(id).await.unwrap().await.unwrap();
    // Three rounds of review in all, as in an uninterrupted run: the counter survived.
    let uninterrupted = Revise::new().run(Draft::default()).await.unwrap();
    assert_eq!(draft, uninterrupted);
    assert_eq!(draft.text, "wrwrwr");
    assert_eq!(
        WRITES.load(Ordering::SeqCst),
        2 + 2 + 3,
        "the hung write ran again"
    );
    let record = store.run(id).await.unwrap();
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_eq!(
        record.output,
        Some(serde_json::json!({"text": "wrwrwr", "revisions": 3}))
    );
    assert_gapless(&*store, id).await;
}

#[path = "support/pg.rs"]
mod pg;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_run_stores_every_checkpoint_and_event_in_postgres() {
    let Some(schema) =
        pg::PgSchema::new("a_durable_run_stores_every_checkpoint_and_event_in_postgres")
    else {
        return;
    };
    completes_and_checkpoints(Arc::new(schema.store().await)).await;
    schema.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_run_resumes_from_postgres_on_a_new_connection() {
    let Some(schema) = pg::PgSchema::new("a_crashed_run_resumes_from_postgres_on_a_new_connection")
    else {
        return;
    };
    resumes_after_a_crash(Arc::new(schema.store().await)).await;
    // The crash again, then the resume through a store of its own, as another process
    // would.
    let store: Arc<dyn Store> = Arc::new(schema.store().await);
    let probe = Arc::new(Probe::default());
    let id = tokio::task::spawn_blocking({
        let (store, probe) = (Arc::clone(&store), Arc::clone(&probe));
        move || crash_mid_run(&store, &probe)
    })
    .await
    .unwrap();
    drop(store);
    let durable = Durable::new(
        Items::with_context(Arc::clone(&probe)),
        schema.store().await,
    );
    assert_eq!(
        durable.resume(id).await.unwrap().await.unwrap(),
        "item-5:50"
    );
    assert_eq!(probe.count("fetch"), 1);
    assert_eq!(probe.count("combine"), 1);
    drop(durable);
    schema.remove().await;
}

/// Records which writes a durable run makes, and passes everything to an in-memory store.
struct Writes {
    inner: MemoryStore,
    calls: Mutex<Vec<String>>,
}

impl Writes {
    fn note(&self, call: impl Into<String>) {
        self.calls.lock().unwrap().push(call.into());
    }
}

impl Store for Writes {
    fn create_run(&self, run: RunRecord) -> StoreFuture<'_, ()> {
        self.note("create_run");
        self.inner.create_run(run)
    }

    fn append_events(&self, run: RunId, events: Vec<Event>) -> StoreFuture<'_, ()> {
        self.note("append_events");
        self.inner.append_events(run, events)
    }

    fn checkpoint(
        &self,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        let nodes: Vec<&str> = checkpoints.iter().map(|c| c.node.as_str()).collect();
        self.note(format!("checkpoint {}", nodes.join(" ")));
        self.inner.checkpoint(run, checkpoints, events)
    }

    fn save_state(
        &self,
        run: RunId,
        state: StateCheckpoint,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.note("save_state");
        self.inner.save_state(run, state, events)
    }

    fn state(&self, run: RunId) -> StoreFuture<'_, Option<StateCheckpoint>> {
        self.inner.state(run)
    }

    fn history(&self, run: RunId) -> StoreFuture<'_, Vec<StateChange>> {
        self.inner.history(run)
    }

    fn suspend(&self, run: RunId, interrupt: Interrupt, events: Vec<Event>) -> StoreFuture<'_, ()> {
        self.note("suspend");
        self.inner.suspend(run, interrupt, events)
    }

    fn interrupt(&self, run: RunId) -> StoreFuture<'_, Option<Interrupt>> {
        self.inner.interrupt(run)
    }

    fn answer(
        &self,
        run: RunId,
        node: String,
        progress: Progress,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.note("answer");
        self.inner.answer(run, node, progress, events)
    }

    fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        output: Option<serde_json::Value>,
        error: Option<String>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.note("finish_run");
        self.inner.finish_run(run, status, output, error, events)
    }

    fn finish_run_after(
        &self,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
        events: Vec<Event>,
        checkpointed: usize,
        status: RunStatus,
        output: Option<serde_json::Value>,
        error: Option<String>,
    ) -> StoreFuture<'_, ()> {
        let nodes: Vec<&str> = checkpoints.iter().map(|c| c.node.as_str()).collect();
        self.note(format!("finish_run_after {} ({status})", nodes.join(" ")));
        // The events that go with the checkpoints end with their `step_succeeded`.
        assert!(matches!(
            events[checkpointed - 1].kind,
            EventKind::StepSucceeded { .. }
        ));
        self.inner.finish_run_after(
            run,
            checkpoints,
            events,
            checkpointed,
            status,
            output,
            error,
        )
    }

    fn run(&self, run: RunId) -> StoreFuture<'_, RunRecord> {
        self.inner.run(run)
    }

    fn runs(&self, limit: usize) -> StoreFuture<'_, Vec<RunRecord>> {
        self.inner.runs(limit)
    }

    fn checkpoints(&self, run: RunId) -> StoreFuture<'_, Vec<Checkpoint>> {
        self.inner.checkpoints(run)
    }

    fn events(&self, run: RunId, from: u64) -> StoreFuture<'_, Vec<Event>> {
        self.inner.events(run, from)
    }

    fn cached(&self, key: CacheKey, now: Timestamp) -> StoreFuture<'_, Option<serde_json::Value>> {
        self.inner.cached(key, now)
    }

    fn cache(
        &self,
        key: CacheKey,
        output: serde_json::Value,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreFuture<'_, ()> {
        self.inner.cache(key, output, now, expires_at)
    }
}

/// A run's last checkpoint is written with its end, in one store call (one transaction on
/// SQLite); every checkpoint before it is written before anything reads it.
#[tokio::test]
async fn a_runs_last_checkpoint_is_written_with_its_end() {
    let writes = Arc::new(Writes {
        inner: MemoryStore::new(),
        calls: Mutex::new(Vec::new()),
    });
    let durable = Durable::with_shared_store(
        Items::new(Probe::default()),
        Arc::clone(&writes) as Arc<dyn Store>,
    );
    let handle = durable.start(4).await.expect("started");
    let id = handle.id();
    assert_eq!(handle.await.expect("ran"), "item-5:50");
    let calls = writes.calls.lock().unwrap().clone();
    assert_eq!(calls.first().map(String::as_str), Some("create_run"));
    assert_eq!(calls[1], "checkpoint fetched");
    // label and big, together or one after the other, then the end with combine's node.
    let middle: Vec<&str> = calls[2..calls.len() - 1]
        .iter()
        .map(String::as_str)
        .collect();
    assert!(
        middle == ["checkpoint label big"]
            || middle == ["checkpoint big label"]
            || middle == ["checkpoint label", "checkpoint big"]
            || middle == ["checkpoint big", "checkpoint label"],
        "{calls:?}"
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("finish_run_after combine (succeeded)")
    );
    let stored = writes.inner.checkpoints(id).await.expect("read");
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[3].node, "combine");
    assert_eq!(
        writes.inner.run(id).await.expect("read").status,
        RunStatus::Succeeded
    );
    let events = assert_gapless(&writes.inner, id).await;
    assert!(matches!(
        events.last().map(|e| &e.kind),
        Some(EventKind::RunFinished { .. })
    ));
}
