//! The store conformance suite: every store keeps runs, checkpoints and events with the
//! same semantics. Run against the in-memory store and a real SQLite file.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use workflow::store::{
    Checkpoint, MemoryStore, RunRecord, RunStatus, SqliteStore, Store, StoreError, Timestamp,
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
    }
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
            checkpoint("research", json!({"notes": ["a", "b"]})),
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
            checkpoint("post", json!("text")),
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
}

/// A checkpoint with a gap in its events, and a second checkpoint of a completed node: both
/// refused, neither writes anything.
async fn refused_writes_change_nothing(store: &dyn Store, id: RunId) {
    // A gap in the events: nothing is written, not even the checkpoint.
    let error = store
        .checkpoint(
            id,
            checkpoint("post", json!("text")),
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
        .checkpoint(id, checkpoint("research", json!(null)), vec![])
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
                checkpoint("research", json!([1, 2, 3])),
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
