//! The store conformance suite: every store keeps runs, checkpoints, states, interrupts and
//! events with the same semantics. Run against the in-memory store, a real SQLite file and a
//! real PostgreSQL server (`WORKFLOW_PG_URL`; skipped with a notice when it is not set).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use workflow::store::{
    CacheKey, Checkpoint, Interrupt, MemoryStore, PostgresStore, Progress, RunRecord, RunStatus,
    SqliteStore, StateCheckpoint, Store, StoreError, Timestamp,
};
use workflow::{Event, EventKind, RunId};

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("workflow-store-{}", RunId::new()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn event(seq: u64, kind: EventKind) -> Event {
    Event {
        seq,
        at: Duration::from_millis(seq * 10),
        kind,
    }
}

fn started(seq: u64, node: &'static str) -> Event {
    event(
        seq,
        EventKind::StepStarted {
            node: node.into(),
            attempt: 1,
        },
    )
}

fn succeeded(seq: u64, node: &'static str) -> Event {
    event(
        seq,
        EventKind::StepSucceeded {
            node: node.into(),
            attempt: 1,
            duration: Duration::from_millis(5),
        },
    )
}

fn checkpoint(node: &str, output: serde_json::Value) -> Checkpoint {
    Checkpoint {
        node: node.into(),
        output,
        attempts: 1,
        started_at: Timestamp(1),
        finished_at: Timestamp(2),
        writes: Vec::new(),
    }
}

fn state(step: u32, node: &str, next: Option<&str>) -> StateCheckpoint {
    StateCheckpoint {
        step,
        node: node.into(),
        state: json!({"draft": format!("v{step}")}),
        rounds: vec![step, 0, 1],
        next: next.map(Into::into),
        attempts: 2,
        started_at: Timestamp(10),
        finished_at: Timestamp(20),
        change: None,
        writes: Vec::new(),
    }
}

fn interrupt(node: &str) -> Interrupt {
    Interrupt {
        node: node.into(),
        request: json!({"question": "publish?"}),
        created_at: Timestamp(30),
    }
}

fn nodes(checkpoints: Vec<Checkpoint>) -> Vec<String> {
    checkpoints.into_iter().map(|c| c.node).collect()
}

fn new_run(workflow: &str) -> RunRecord {
    RunRecord::new(RunId::new(), workflow, "hash-1", json!({"topic": "stores"}))
}

/// The whole life of a run, and the rules every write follows.
async fn conformance(store: &dyn Store) {
    let run = new_run("Pipeline");
    let id = run.id;
    store.create_run(run.clone()).await.expect("created");
    assert!(matches!(
        store.create_run(run.clone()).await,
        Err(StoreError::DuplicateRun(d)) if d == id
    ));
    assert_eq!(store.run(id).await.expect("found"), run);

    let start = event(
        0,
        EventKind::RunStarted {
            workflow: "Pipeline".into(),
        },
    );
    store
        .append_events(id, vec![start, started(1, "research")])
        .await
        .expect("appended");
    store
        .checkpoint(
            id,
            vec![checkpoint("research", json!({"notes": ["a", "b"]}))],
            vec![succeeded(2, "research")],
        )
        .await
        .expect("checkpointed");

    refused_writes_change_nothing(store, id).await;

    store
        .append_events(id, vec![started(3, "post")])
        .await
        .expect("appended");
    store
        .checkpoint(
            id,
            vec![checkpoint("post", json!("text"))],
            vec![succeeded(4, "post")],
        )
        .await
        .expect("checkpointed");
    let nodes: Vec<String> = store
        .checkpoints(id)
        .await
        .expect("read")
        .into_iter()
        .map(|c| c.node)
        .collect();
    assert_eq!(nodes, ["research", "post"], "in completion order");

    // Events read back whole, from any sequence number.
    let events = store.events(id, 3).await.expect("read");
    assert_eq!(events, vec![started(3, "post"), succeeded(4, "post")]);
    assert!(store.events(id, 99).await.expect("read").is_empty());

    let finished = event(
        5,
        EventKind::RunFinished {
            duration: Duration::from_millis(50),
        },
    );
    store
        .finish_run(
            id,
            RunStatus::Succeeded,
            Some(json!({"url": "https://blog.example/x"})),
            None,
            vec![finished],
        )
        .await
        .expect("finished");
    let record = store.run(id).await.expect("found");
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_eq!(
        record.output,
        Some(json!({"url": "https://blog.example/x"}))
    );
    assert!(record.updated_at >= record.created_at);

    // An ended run takes no more writes.
    assert!(matches!(
        store.append_events(id, vec![started(6, "late")]).await,
        Err(StoreError::Ended(_))
    ));

    unknown_runs_and_listing(store, id).await;
    batches(store).await;
    states(store).await;
    interrupts(store).await;
    cache(store).await;
    last_checkpoints_and_end(store).await;
}

/// A run's last checkpoints and its end, written together: the checkpoints come after the
/// run's earlier ones, the events continue its log, and the run has ended.
async fn last_checkpoints_and_end(store: &dyn Store) {
    let run = new_run("Pipeline");
    let id = run.id;
    store.create_run(run).await.expect("created");
    store
        .checkpoint(
            id,
            vec![checkpoint("research", json!(1))],
            vec![started(0, "research"), succeeded(1, "research")],
        )
        .await
        .expect("checkpointed");
    let finished = event(
        4,
        EventKind::RunFinished {
            duration: Duration::from_millis(40),
        },
    );
    store
        .finish_run_after(
            id,
            vec![checkpoint("post", json!("p"))],
            vec![started(2, "post"), succeeded(3, "post"), finished],
            2,
            RunStatus::Succeeded,
            Some(json!("p")),
            None,
        )
        .await
        .expect("finished");
    assert_eq!(
        nodes(store.checkpoints(id).await.expect("read")),
        ["research", "post"]
    );
    let events = store.events(id, 0).await.expect("read");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    let record = store.run(id).await.expect("read");
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_eq!(record.output, Some(json!("p")));
    // A gap in the log is refused, and nothing of the write stays.
    let run = new_run("Pipeline");
    let gap = run.id;
    store.create_run(run).await.expect("created");
    assert!(
        store
            .finish_run_after(
                gap,
                vec![checkpoint("post", json!("p"))],
                vec![started(1, "post")],
                1,
                RunStatus::Succeeded,
                Some(json!("p")),
                None,
            )
            .await
            .is_err()
    );
    assert!(store.checkpoints(gap).await.expect("read").is_empty());
    assert_eq!(
        store.run(gap).await.expect("read").status,
        RunStatus::Running
    );
}

fn key(step: &str, version: u32, input: &serde_json::Value) -> CacheKey {
    CacheKey {
        step: step.to_owned(),
        version,
        input: input.to_string(),
    }
}

/// Cached outputs: found by step, version and the exact input, until they expire; a later
/// entry under the same key replaces the earlier one; expired entries are dropped.
async fn cache(store: &dyn Store) {
    let t = |micros: i64| Timestamp(1_000_000 + micros);
    let summary = key("blog::summarize", 1, &json!(["a long text"]));
    assert_eq!(
        store.cached(summary.clone(), t(0)).await.expect("read"),
        None
    );
    store
        .cache(summary.clone(), json!("short"), t(0), t(100))
        .await
        .expect("cached");
    assert_eq!(
        store.cached(summary.clone(), t(99)).await.expect("read"),
        Some(json!("short"))
    );
    // Not past its time to live.
    assert_eq!(
        store.cached(summary.clone(), t(100)).await.expect("read"),
        None
    );
    // Another input, another version, another step: other entries.
    for other in [
        key("blog::summarize", 1, &json!(["another text"])),
        key("blog::summarize", 2, &json!(["a long text"])),
        key("blog::translate", 1, &json!(["a long text"])),
    ] {
        assert_eq!(store.cached(other, t(1)).await.expect("read"), None);
    }
    // The same key again replaces the entry (and its expiry).
    store
        .cache(summary.clone(), json!("shorter"), t(1), t(500))
        .await
        .expect("replaced");
    assert_eq!(
        store.cached(summary.clone(), t(400)).await.expect("read"),
        Some(json!("shorter"))
    );
    // Keeping an entry drops the expired ones, so the cache does not grow forever.
    let other = key("blog::translate", 1, &json!(["x"]));
    store
        .cache(other.clone(), json!("y"), t(600), t(700))
        .await
        .expect("cached");
    assert_eq!(
        store.cached(summary, t(0)).await.expect("read"),
        None,
        "dropped"
    );
    assert_eq!(
        store.cached(other, t(650)).await.expect("read"),
        Some(json!("y"))
    );
}

/// A checkpoint with a gap in its events, and a second checkpoint of a completed node: both
/// refused, neither writes anything.
async fn refused_writes_change_nothing(store: &dyn Store, id: RunId) {
    // A gap in the events: nothing is written, not even the checkpoint.
    let error = store
        .checkpoint(
            id,
            vec![checkpoint("post", json!("text"))],
            vec![succeeded(9, "post")],
        )
        .await
        .expect_err("out of sequence");
    assert!(
        matches!(
            error,
            StoreError::OutOfSequence {
                expected: 3,
                got: 9,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(store.checkpoints(id).await.expect("read").len(), 1);
    assert_eq!(store.events(id, 0).await.expect("read").len(), 3);

    // A node completes once.
    let error = store
        .checkpoint(id, vec![checkpoint("research", json!(null))], vec![])
        .await
        .expect_err("completed already");
    assert!(matches!(error, StoreError::AlreadyCompleted { ref node, .. } if node == "research"));
    assert_eq!(
        store.checkpoints(id).await.expect("read")[0].output,
        json!({"notes": ["a", "b"]})
    );
}

/// Reads and writes of a run that does not exist; listing newest first.
async fn unknown_runs_and_listing(store: &dyn Store, first: RunId) {
    // Unknown runs are an error for every read and write.
    let unknown = RunId::new();
    assert!(matches!(
        store.run(unknown).await,
        Err(StoreError::UnknownRun(_))
    ));
    assert!(matches!(
        store.events(unknown, 0).await,
        Err(StoreError::UnknownRun(_))
    ));
    assert!(matches!(
        store.checkpoints(unknown).await,
        Err(StoreError::UnknownRun(_))
    ));
    assert!(matches!(
        store.append_events(unknown, vec![started(0, "x")]).await,
        Err(StoreError::UnknownRun(_))
    ));

    // Listing: newest first, limited.
    let second = new_run("Other");
    store.create_run(second.clone()).await.expect("created");
    let listed = store.runs(10).await.expect("listed");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, second.id);
    assert_eq!(listed[1].id, first);
    assert_eq!(store.runs(1).await.expect("listed").len(), 1);
}

/// Several nodes completing in one transaction, and batches that are refused whole.
async fn batches(store: &dyn Store) {
    let run = new_run("Batches");
    let id = run.id;
    store.create_run(run).await.expect("created");
    store
        .checkpoint(
            id,
            vec![checkpoint("a", json!(1)), checkpoint("b", json!(2))],
            vec![succeeded(0, "a"), succeeded(1, "b")],
        )
        .await
        .expect("checkpointed");
    store
        .checkpoint(id, vec![checkpoint("c", json!(3))], vec![succeeded(2, "c")])
        .await
        .expect("checkpointed");
    let done = store.checkpoints(id).await.expect("read");
    assert_eq!(nodes(done.clone()), ["a", "b", "c"], "positions continue");
    assert_eq!(done[1], checkpoint("b", json!(2)));

    // One completed node refuses the whole batch: no checkpoint, no event.
    let error = store
        .checkpoint(
            id,
            vec![checkpoint("d", json!(4)), checkpoint("a", json!(0))],
            vec![succeeded(3, "d")],
        )
        .await
        .expect_err("a is completed");
    assert!(
        matches!(error, StoreError::AlreadyCompleted { ref node, .. } if node == "a"),
        "{error}"
    );
    // So does a node twice in the batch.
    let error = store
        .checkpoint(
            id,
            vec![checkpoint("e", json!(5)), checkpoint("e", json!(6))],
            vec![succeeded(3, "e")],
        )
        .await
        .expect_err("e twice");
    assert!(
        matches!(error, StoreError::AlreadyCompleted { ref node, .. } if node == "e"),
        "{error}"
    );
    assert_eq!(
        nodes(store.checkpoints(id).await.expect("read")),
        ["a", "b", "c"]
    );
    assert_eq!(store.events(id, 0).await.expect("read").len(), 3);

    // An empty batch just appends its events; the next batch continues the positions.
    store
        .checkpoint(id, vec![], vec![started(3, "d")])
        .await
        .expect("appended");
    store
        .checkpoint(id, vec![checkpoint("d", json!(4))], vec![succeeded(4, "d")])
        .await
        .expect("checkpointed");
    assert_eq!(
        nodes(store.checkpoints(id).await.expect("read")),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        store.events(id, 3).await.expect("read"),
        vec![started(3, "d"), succeeded(4, "d")]
    );
}

/// A state graph's progress: only the latest state is kept.
async fn states(store: &dyn Store) {
    let run = new_run("Graph");
    let id = run.id;
    store.create_run(run).await.expect("created");
    assert_eq!(store.state(id).await.expect("read"), None);

    store
        .save_state(
            id,
            state(1, "draft", Some("review")),
            vec![succeeded(0, "draft")],
        )
        .await
        .expect("saved");
    store
        .save_state(id, state(2, "review", None), vec![succeeded(1, "review")])
        .await
        .expect("saved");
    assert_eq!(
        store.state(id).await.expect("read"),
        Some(state(2, "review", None)),
        "replaced"
    );
    assert!(store.checkpoints(id).await.expect("read").is_empty());

    // A refused save changes nothing.
    let error = store
        .save_state(id, state(3, "draft", None), vec![succeeded(7, "draft")])
        .await
        .expect_err("out of sequence");
    assert!(
        matches!(
            error,
            StoreError::OutOfSequence {
                expected: 2,
                got: 7,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        store.state(id).await.expect("read"),
        Some(state(2, "review", None))
    );
    assert_eq!(store.events(id, 0).await.expect("read").len(), 2);

    let unknown = RunId::new();
    assert!(matches!(
        store.state(unknown).await,
        Err(StoreError::UnknownRun(_))
    ));
    assert!(matches!(
        store.save_state(unknown, state(1, "x", None), vec![]).await,
        Err(StoreError::UnknownRun(_))
    ));

    // No history unless the checkpoints carry changes.
    assert!(store.history(id).await.expect("read").is_empty());

    // A run that succeeds keeps its final state once, as its output, which its state
    // checkpoint reads back; an ended run takes no more states.
    store
        .finish_run(id, RunStatus::Succeeded, Some(json!(1)), None, vec![])
        .await
        .expect("finished");
    assert_eq!(
        store.state(id).await.expect("read"),
        Some(StateCheckpoint {
            state: json!(1),
            ..state(2, "review", None)
        })
    );
    assert!(matches!(
        store.save_state(id, state(3, "draft", None), vec![]).await,
        Err(StoreError::Ended(_))
    ));
    history(store).await;
}

/// A run that keeps its history: each state checkpoint's change is appended, in order,
/// through saves and answers; the latest state is still kept once, without its change.
async fn history(store: &dyn Store) {
    let run = new_run("Graph");
    let id = run.id;
    store.create_run(run).await.expect("created");
    let with_change = |step: u32, node: &str, patch: serde_json::Value| StateCheckpoint {
        change: Some(patch),
        writes: Vec::new(),
        ..state(step, node, None)
    };
    let add = |n: u32| json!([{"op": "add", "path": "/items/-", "value": n}]);
    store
        .save_state(id, with_change(1, "draft", add(1)), vec![])
        .await
        .expect("saved");
    store
        .suspend(id, interrupt("review"), vec![])
        .await
        .expect("suspended");
    store
        .answer(
            id,
            "review".to_owned(),
            Progress::State(with_change(2, "review", add(2))),
            vec![],
        )
        .await
        .expect("answered");
    let history = store.history(id).await.expect("read");
    let steps: Vec<(u32, &str)> = history.iter().map(|c| (c.step, c.node.as_str())).collect();
    assert_eq!(steps, [(1, "draft"), (2, "review")]);
    assert_eq!(history[1].patch, add(2));
    let latest = store.state(id).await.expect("read").expect("a state");
    assert_eq!(latest.change, None, "the change lives in the history only");
    assert_eq!(latest.step, 2);
    assert!(matches!(
        store.history(RunId::new()).await,
        Err(StoreError::UnknownRun(_))
    ));
}

/// Pausing a run for outside input, and answering it.
async fn interrupts(store: &dyn Store) {
    let run = new_run("Review");
    let id = run.id;
    store.create_run(run).await.expect("created");
    store
        .checkpoint(
            id,
            vec![checkpoint("draft", json!("d"))],
            vec![succeeded(0, "draft")],
        )
        .await
        .expect("checkpointed");
    assert_eq!(store.interrupt(id).await.expect("read"), None);

    // A running run has nothing to answer.
    let error = store
        .answer(id, "approve".into(), Progress::Nodes(vec![]), vec![])
        .await
        .expect_err("not waiting");
    assert!(
        matches!(
            error,
            StoreError::NotWaiting {
                status: RunStatus::Running,
                ..
            }
        ),
        "{error}"
    );

    store
        .suspend(id, interrupt("approve"), vec![started(1, "approve")])
        .await
        .expect("suspended");
    assert_eq!(
        store.run(id).await.expect("found").status,
        RunStatus::Waiting
    );
    assert_eq!(
        store.interrupt(id).await.expect("read"),
        Some(interrupt("approve"))
    );

    refused_answers_change_nothing(store, id).await;

    // A waiting run still takes writes (other branches go on).
    store
        .append_events(id, vec![started(2, "other")])
        .await
        .expect("appended");

    store
        .answer(
            id,
            "approve".into(),
            Progress::Nodes(vec![checkpoint("approve", json!({"ok": true}))]),
            vec![succeeded(3, "approve")],
        )
        .await
        .expect("answered");
    assert_eq!(
        store.run(id).await.expect("found").status,
        RunStatus::Running
    );
    assert_eq!(store.interrupt(id).await.expect("read"), None);
    assert_eq!(
        store.checkpoints(id).await.expect("read")[1],
        checkpoint("approve", json!({"ok": true}))
    );
    assert_eq!(
        store.events(id, 3).await.expect("read"),
        vec![succeeded(3, "approve")]
    );
    // Answered once.
    assert!(matches!(
        store
            .answer(id, "approve".into(), Progress::Nodes(vec![]), vec![])
            .await,
        Err(StoreError::NotWaiting {
            status: RunStatus::Running,
            ..
        })
    ));

    state_graph_answers_and_ended_runs(store).await;
}

/// Answers to a waiting run that are refused: the run stays waiting, nothing is written.
async fn refused_answers_change_nothing(store: &dyn Store, id: RunId) {
    let error = store
        .answer(
            id,
            "publish".into(),
            Progress::Nodes(vec![checkpoint("publish", json!(1))]),
            vec![succeeded(2, "publish")],
        )
        .await
        .expect_err("another node");
    assert!(
        matches!(
            error,
            StoreError::WrongInterrupt { ref waiting, ref got, .. }
                if waiting == "approve" && got == "publish"
        ),
        "{error}"
    );
    let error = store
        .answer(
            id,
            "approve".into(),
            Progress::Nodes(vec![
                checkpoint("approve", json!(1)),
                checkpoint("draft", json!(0)),
            ]),
            vec![succeeded(2, "approve")],
        )
        .await
        .expect_err("draft is completed");
    assert!(
        matches!(error, StoreError::AlreadyCompleted { .. }),
        "{error}"
    );
    let error = store
        .answer(
            id,
            "approve".into(),
            Progress::Nodes(vec![checkpoint("approve", json!(1))]),
            vec![succeeded(8, "approve")],
        )
        .await
        .expect_err("out of sequence");
    assert!(matches!(error, StoreError::OutOfSequence { .. }), "{error}");

    assert_eq!(
        store.run(id).await.expect("found").status,
        RunStatus::Waiting
    );
    assert_eq!(
        store.interrupt(id).await.expect("read"),
        Some(interrupt("approve"))
    );
    assert_eq!(nodes(store.checkpoints(id).await.expect("read")), ["draft"]);
    assert_eq!(store.events(id, 0).await.expect("read").len(), 2);
}

/// Answering a state graph's pause replaces its state; ended runs neither pause nor answer.
async fn state_graph_answers_and_ended_runs(store: &dyn Store) {
    let run = new_run("Loop");
    let id = run.id;
    store.create_run(run).await.expect("created");
    store
        .save_state(id, state(1, "draft", Some("approve")), vec![])
        .await
        .expect("saved");
    store
        .suspend(id, interrupt("approve"), vec![])
        .await
        .expect("suspended");
    store
        .answer(
            id,
            "approve".into(),
            Progress::State(state(2, "approve", None)),
            vec![succeeded(0, "approve")],
        )
        .await
        .expect("answered");
    assert_eq!(
        store.state(id).await.expect("read"),
        Some(state(2, "approve", None))
    );
    assert_eq!(
        store.run(id).await.expect("found").status,
        RunStatus::Running
    );

    // Cancelled while waiting: the interrupt goes, and the run takes no more.
    store
        .suspend(id, interrupt("approve"), vec![])
        .await
        .expect("suspended again");
    store
        .finish_run(id, RunStatus::Cancelled, None, None, vec![])
        .await
        .expect("cancelled");
    assert_eq!(store.interrupt(id).await.expect("read"), None);
    assert!(matches!(
        store.suspend(id, interrupt("approve"), vec![]).await,
        Err(StoreError::Ended(_))
    ));
    assert!(matches!(
        store
            .answer(id, "approve".into(), Progress::Nodes(vec![]), vec![])
            .await,
        Err(StoreError::NotWaiting {
            status: RunStatus::Cancelled,
            ..
        })
    ));

    let unknown = RunId::new();
    assert!(matches!(
        store.interrupt(unknown).await,
        Err(StoreError::UnknownRun(_))
    ));
    assert!(matches!(
        store.suspend(unknown, interrupt("x"), vec![]).await,
        Err(StoreError::UnknownRun(_))
    ));
    assert!(matches!(
        store
            .answer(unknown, "x".into(), Progress::Nodes(vec![]), vec![])
            .await,
        Err(StoreError::UnknownRun(_))
    ));
}

#[tokio::test]
async fn the_memory_store_conforms() {
    conformance(&MemoryStore::new()).await;
}

#[tokio::test]
async fn the_sqlite_store_conforms() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.0.join("runs.db")).expect("opened");
    conformance(&store).await;
}

#[tokio::test]
async fn a_sqlite_store_keeps_everything_across_reopening() {
    let dir = TempDir::new();
    let path = dir.0.join("runs.db");
    let run = new_run("Pipeline");
    {
        let store = SqliteStore::open(&path).expect("opened");
        store.create_run(run.clone()).await.expect("created");
        store
            .append_events(run.id, vec![started(0, "research")])
            .await
            .expect("appended");
        store
            .checkpoint(
                run.id,
                vec![checkpoint("research", json!([1, 2, 3]))],
                vec![succeeded(1, "research")],
            )
            .await
            .expect("checkpointed");
    }
    let store = SqliteStore::open(&path).expect("reopened");
    let found = store.run(run.id).await.expect("found");
    assert_eq!(
        RunRecord {
            updated_at: run.updated_at,
            ..found
        },
        run
    );
    assert_eq!(
        store.checkpoints(run.id).await.expect("read")[0].output,
        json!([1, 2, 3])
    );
    assert_eq!(store.events(run.id, 0).await.expect("read").len(), 2);
    // The log goes on where it stopped.
    store
        .append_events(run.id, vec![started(2, "post")])
        .await
        .expect("continues at 2");
    // So do the checkpoints.
    store
        .checkpoint(run.id, vec![checkpoint("post", json!("p"))], vec![])
        .await
        .expect("checkpointed");
    assert_eq!(
        nodes(store.checkpoints(run.id).await.expect("read")),
        ["research", "post"]
    );
}

/// Commits go on while the store's own thread copies the write-ahead log into the file.
/// Under a steady stream of commits the log stays bounded (unchecked, these would make it
/// about 50 MiB), and closing the store leaves the file whole and the log removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_keeps_its_log_bounded_and_removes_it_when_it_closes() {
    const COMMITS: usize = 6000;
    let dir = TempDir::new();
    let path = dir.0.join("runs.db");
    let log = dir.0.join("runs.db-wal");
    let run = new_run("Pipeline");
    let mut longest = 0;
    {
        let store = SqliteStore::open(&path).expect("opened");
        store.create_run(run.clone()).await.expect("created");
        for k in 0..COMMITS {
            store
                .checkpoint(run.id, vec![checkpoint(&format!("n{k}"), json!(k))], vec![])
                .await
                .expect("checkpointed");
            longest = longest.max(std::fs::metadata(&log).map_or(0, |file| file.len()));
        }
    }
    eprintln!("the log's longest: {longest} bytes");
    assert!(!log.exists(), "the log is removed when the store closes");
    assert!(longest < 24 << 20, "the log grew to {longest} bytes");
    let store = SqliteStore::open(&path).expect("reopened");
    assert_eq!(
        store.checkpoints(run.id).await.expect("read").len(),
        COMMITS
    );
}

/// Two stores on one file (two processes, say) write at the same time: each write waits
/// for the other's to commit instead of failing with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sqlite_stores_on_one_file_write_at_once() {
    const WRITES: usize = 300;
    let dir = TempDir::new();
    let path = dir.0.join("runs.db");
    let writers = (0..2).map(|_| {
        let store = SqliteStore::open(&path).expect("opened");
        tokio::spawn(async move {
            let run = new_run("Pipeline");
            store.create_run(run.clone()).await.expect("created");
            for k in 0..WRITES {
                store
                    .checkpoint(run.id, vec![checkpoint(&format!("n{k}"), json!(k))], vec![])
                    .await
                    .expect("checkpointed while the other store writes");
                let read = store.run(run.id).await.expect("read");
                assert_eq!(read.status, RunStatus::Running);
            }
            run.id
        })
    });
    let runs: Vec<RunId> = futures_util::future::join_all(writers)
        .await
        .into_iter()
        .map(|joined| joined.expect("the writer finished"))
        .collect();
    let store = SqliteStore::open(&path).expect("reopened");
    for run in runs {
        assert_eq!(store.checkpoints(run).await.expect("read").len(), WRITES);
    }
}

#[tokio::test]
async fn a_sqlite_store_keeps_states_and_interrupts_across_reopening() {
    let dir = TempDir::new();
    let path = dir.0.join("runs.db");
    let run = new_run("Graph");
    {
        let store = SqliteStore::open(&path).expect("opened");
        store.create_run(run.clone()).await.expect("created");
        store
            .save_state(run.id, state(4, "draft", Some("approve")), vec![])
            .await
            .expect("saved");
        store
            .suspend(run.id, interrupt("approve"), vec![started(0, "approve")])
            .await
            .expect("suspended");
    }
    let store = SqliteStore::open(&path).expect("reopened");
    assert_eq!(
        store.state(run.id).await.expect("read"),
        Some(state(4, "draft", Some("approve")))
    );
    assert_eq!(
        store.interrupt(run.id).await.expect("read"),
        Some(interrupt("approve"))
    );
    assert_eq!(
        store.run(run.id).await.expect("found").status,
        RunStatus::Waiting
    );
    store
        .answer(
            run.id,
            "approve".into(),
            Progress::State(state(5, "approve", None)),
            vec![succeeded(1, "approve")],
        )
        .await
        .expect("answered after reopening");
    assert_eq!(
        store.state(run.id).await.expect("read"),
        Some(state(5, "approve", None))
    );
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused() {
    let dir = TempDir::new();
    let path = dir.0.join("runs.db");
    drop(SqliteStore::open(&path).expect("created"));
    bump_schema_version(&path);
    let error = SqliteStore::open(&path).err().expect("refused");
    assert!(
        error.to_string().contains("newer than this program's"),
        "{error}"
    );
}

/// Sets the file's `user_version` (header offset 60, big-endian) past the known schema, as
/// a newer program would.
fn bump_schema_version(path: &std::path::Path) {
    use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut header = [0u8; 100];
    file.read_exact(&mut header).expect("header");
    assert_eq!(&header[..16], b"SQLite format 3\0");
    file.seek(SeekFrom::Start(60)).expect("seek");
    file.write_all(&(SqliteStore::SCHEMA_VERSION + 1).to_be_bytes())
        .expect("write");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = TempDir::new();
    let path = dir.0.join("not-a-db.db");
    std::fs::write(&path, b"this is not a database, but it is long enough to look like one at first glance; more bytes follow here to pass the size checks").expect("written");
    let error = SqliteStore::open(&path).err().expect("refused");
    assert!(error.to_string().contains("the store failed"), "{error}");
}

// ---- PostgreSQL: the same suite, against the server `WORKFLOW_PG_URL` names. ----

#[path = "support/pg.rs"]
mod pg;
use pg::PgSchema;

#[tokio::test]
async fn the_postgres_store_conforms() {
    let Some(schema) = PgSchema::new("the_postgres_store_conforms") else {
        return;
    };
    let store = schema.store().await;
    conformance(&store).await;
    drop(store);
    schema.remove().await;
}

#[tokio::test]
async fn a_postgres_store_keeps_everything_across_reconnecting() {
    let Some(schema) = PgSchema::new("a_postgres_store_keeps_everything_across_reconnecting")
    else {
        return;
    };
    let run = new_run("Pipeline");
    {
        let store = schema.store().await;
        store.create_run(run.clone()).await.expect("created");
        store
            .append_events(run.id, vec![started(0, "research")])
            .await
            .expect("appended");
        store
            .checkpoint(
                run.id,
                vec![checkpoint("research", json!({"n": 1}))],
                vec![succeeded(1, "research")],
            )
            .await
            .expect("checkpointed");
    }
    // Another process, as it were: a new pool on the same database.
    let store = schema.store().await;
    assert_eq!(
        store.run(run.id).await.expect("found"),
        run_after(&store, &run).await
    );
    assert_eq!(
        store.checkpoints(run.id).await.expect("read"),
        vec![checkpoint("research", json!({"n": 1}))]
    );
    assert_eq!(
        store.events(run.id, 0).await.expect("read"),
        vec![started(0, "research"), succeeded(1, "research")]
    );
    assert_eq!(store.runs(10).await.expect("listed").len(), 1);
    drop(store);
    schema.remove().await;
}

/// `run` as the store has it now (its `updated_at` moves with each write).
async fn run_after(store: &dyn Store, run: &RunRecord) -> RunRecord {
    let stored = store.run(run.id).await.expect("found");
    RunRecord {
        updated_at: stored.updated_at,
        ..run.clone()
    }
}

#[tokio::test]
async fn a_postgres_database_from_a_newer_version_is_refused() {
    let Some(schema) = PgSchema::new("a_postgres_database_from_a_newer_version_is_refused") else {
        return;
    };
    drop(schema.store().await);
    schema
        .execute(&format!(
            "UPDATE workflow_schema SET version = {}",
            PostgresStore::SCHEMA_VERSION + 1
        ))
        .await;
    let error = PostgresStore::connect_in_schema(&schema.url, &schema.name)
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("newer than this program's"),
        "{error}"
    );
    schema.remove().await;
}

#[tokio::test]
async fn concurrent_writers_of_one_run_take_turns_on_postgres() {
    let Some(schema) = PgSchema::new("concurrent_writers_of_one_run_take_turns_on_postgres") else {
        return;
    };
    let store = std::sync::Arc::new(schema.store().await);
    let run = new_run("Pipeline");
    store.create_run(run.clone()).await.expect("created");
    // Two writers race to complete the same node: exactly one wins, the other is told.
    let race = |store: std::sync::Arc<PostgresStore>| async move {
        store
            .checkpoint(run.id, vec![checkpoint("research", json!(1))], vec![])
            .await
    };
    let (a, b) = tokio::join!(
        tokio::spawn(race(std::sync::Arc::clone(&store))),
        tokio::spawn(race(std::sync::Arc::clone(&store)))
    );
    let outcomes = [a.expect("joined"), b.expect("joined")];
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(outcomes.iter().any(|o| matches!(
        o,
        Err(StoreError::AlreadyCompleted { node, .. }) if node == "research"
    )));
    assert_eq!(store.checkpoints(run.id).await.expect("read").len(), 1);
    drop(store);
    schema.remove().await;
}

#[tokio::test]
async fn a_bad_postgres_url_is_a_clear_error() {
    let error = PostgresStore::connect("postgres://nobody@127.0.0.1:1/none")
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("the store failed"), "{error}");
}
