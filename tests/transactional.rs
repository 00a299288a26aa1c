//! Transactional steps: a step's own SQL writes commit in the transaction that stores its
//! checkpoint, on SQLite and on PostgreSQL (in a run driven by one process, and on a
//! worker). A failed attempt's writes are dropped; a write that fails stores nothing of
//! the node, and the run resumes once the cause is gone; without a database there is no
//! transaction to write in.

// Steps borrow their inputs as the producing node's output type.
#![allow(clippy::ptr_arg, clippy::trivially_copy_pass_by_ref)]

#[path = "support/pg.rs"]
mod pg;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::json;
use workflow::prelude::*;
use workflow::store::{MemoryStore, RunStatus, SqliteStore, Store, StoreError};
use workflow::worker::Worker;

/// Counts `charge`'s attempts; the first `fail_first` of them fail after writing.
#[derive(Default)]
struct Bank {
    attempts: AtomicU32,
    fail_first: u32,
}

#[step]
fn order(amount: &u32) -> u32 {
    *amount
}

#[step(retries = 2, backoff = "1ms..2ms")]
fn charge(ctx: &Bank, amount: &u32) -> Result<String, StepError> {
    let attempt = ctx.attempts.fetch_add(1, Ordering::SeqCst) + 1;
    let tx = workflow::transaction().ok_or_else(|| StepError::msg("no transaction"))?;
    let key = workflow::idempotency_key().expect("inside a step");
    tx.execute(
        "INSERT INTO payments (key, amount, attempt) VALUES ($1, $2, $3)",
        [json!(key), json!(amount), json!(attempt)],
    );
    if attempt <= ctx.fail_first {
        return Err(StepError::msg("the card reader hiccuped"));
    }
    Ok(format!("charged {amount}"))
}

#[step]
#[allow(clippy::ptr_arg)]
fn receipt(charged: &String) -> String {
    format!("receipt: {charged}")
}

workflow! {
    Pay(ctx: Bank, amount: u32) -> String {
        let order = order(amount);
        let charged = charge(order);
        receipt(charged)
    }
}

const TABLE: &str =
    "CREATE TABLE payments (key TEXT PRIMARY KEY, amount BIGINT NOT NULL, attempt BIGINT NOT NULL)";

fn sqlite_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("workflow-tx-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("runs.db")
}

/// The payments in an SQLite file: key, amount, attempt.
fn sqlite_payments(path: &std::path::Path) -> Vec<(String, i64, i64)> {
    let db = rusqlite::Connection::open(path).unwrap();
    let mut query = db
        .prepare("SELECT key, amount, attempt FROM payments ORDER BY key")
        .unwrap();
    query
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

async fn pg_payments(schema: &pg::PgSchema) -> Vec<(String, i64, i64)> {
    let (client, connection) =
        tokio_postgres::connect(&schema.url_in_schema(), tokio_postgres::NoTls)
            .await
            .unwrap();
    let task = tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT key, amount, attempt FROM payments ORDER BY key",
            &[],
        )
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn bank(fail_first: u32) -> Arc<Bank> {
    Arc::new(Bank {
        fail_first,
        ..Bank::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_steps_writes_commit_once_with_its_checkpoint() {
    let path = sqlite_file("once");
    let store = SqliteStore::open(&path).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(TABLE, [])
        .unwrap();
    let ctx = bank(1);
    let durable = Durable::new(Pay::with_context(Arc::clone(&ctx)), store);
    let handle = durable.start(7).await.unwrap();
    let id = handle.id();
    assert_eq!(handle.await.unwrap(), "receipt: charged 7");
    assert_eq!(ctx.attempts.load(Ordering::SeqCst), 2);
    // The failed first attempt's write went with it; the second one's is there.
    assert_eq!(sqlite_payments(&path), [(format!("{id}/charged"), 7, 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_stores_nothing_of_its_node_and_the_run_resumes_once_fixed() {
    let path = sqlite_file("failing");
    let store = SqliteStore::open(&path).unwrap();
    // No table yet: the write fails.
    let ctx = bank(0);
    let durable = Durable::new(Pay::with_context(Arc::clone(&ctx)), store.clone());
    let handle = durable.start(9).await.unwrap();
    let id = handle.id();
    let error = handle.await.unwrap_err();
    let RunError::Store(StoreError::Statement {
        node,
        sql,
        error: cause,
        ..
    }) = &error
    else {
        panic!("expected a failed statement, got {error:?}");
    };
    assert_eq!(node, "charged");
    assert!(sql.starts_with("INSERT INTO payments"));
    assert!(cause.contains("no such table: payments"), "{cause}");
    assert_eq!(
        error.to_string(),
        format!(
            "the statement of node `charged` of run {id} failed, so the node's checkpoint was not stored: {cause} (in `{sql}`)"
        )
    );
    let stored: Vec<String> = store
        .checkpoints(id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.node)
        .collect();
    assert_eq!(stored, ["order"], "nothing of `charged` is stored");
    assert_eq!(store.run(id).await.unwrap().status, RunStatus::Running);
    // Once the table exists, the run resumes: `charged` runs again and its write commits.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(TABLE, [])
        .unwrap();
    let resumed = durable.resume(id).await.unwrap().await.unwrap();
    assert_eq!(resumed, "receipt: charged 9");
    assert_eq!(ctx.attempts.load(Ordering::SeqCst), 2);
    assert_eq!(sqlite_payments(&path), [(format!("{id}/charged"), 9, 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_steps_writes_commit_once_in_one_process_and_on_a_worker() {
    let Some(schema) = pg::PgSchema::new("on_postgres_a_steps_writes_commit_once") else {
        return;
    };
    let store = schema.store().await;
    schema.execute(TABLE).await;
    // Driven by this process.
    let durable = Durable::new(Pay::with_context(bank(1)), store.clone());
    let handle = durable.start(5).await.unwrap();
    let local = handle.id();
    assert_eq!(handle.await.unwrap(), "receipt: charged 5");
    // Run by a worker.
    let submitted = durable.submit(6).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::new(store.clone())
            .workflow(Pay::with_context(bank(1)))
            .poll_every(Duration::from_millis(10))
            .run_until(stopped),
    );
    while !store.run(submitted).await.unwrap().status.is_final() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    let record = store.run(submitted).await.unwrap();
    assert_eq!(record.output, Some(json!("receipt: charged 6")));
    let mut expected = vec![
        (format!("{local}/charged"), 5, 2),
        (format!("{submitted}/charged"), 6, 2),
    ];
    expected.sort();
    assert_eq!(pg_payments(&schema).await, expected);
    schema.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_database_there_is_no_transaction() {
    let durable = Durable::new(Pay::with_context(bank(0)), MemoryStore::new());
    let error = durable.run(1).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "node `charged` (step `charge`) failed: no transaction"
    );
    // Nor outside a step, or in a run that is not durable.
    assert!(workflow::transaction().is_none());
    let error = Pay::with_context(bank(0)).run(1).await.unwrap_err();
    assert!(error.to_string().ends_with("no transaction"), "{error}");
}

/// A counter that a state graph loops on, noting each round in a table.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Tally {
    count: u32,
}

#[step]
fn tick(tally: &mut Tally) -> Result<bool, StepError> {
    tally.count += 1;
    let tx = workflow::transaction().ok_or_else(|| StepError::msg("no transaction"))?;
    tx.execute(
        "INSERT INTO ticks (round) VALUES ($1)",
        [json!(tally.count)],
    );
    Ok(tally.count < 3)
}

workflow! {
    Ticker(tally: &mut Tally) {
        tick => match {
            true => tick,
            false => END,
        } max 10 => END;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_graphs_step_writes_with_the_state_it_stores() {
    let path = sqlite_file("state-graph");
    let store = SqliteStore::open(&path).unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute("CREATE TABLE ticks (round INTEGER NOT NULL)", [])
        .unwrap();
    let tally = Durable::new(Ticker::new(), store)
        .run(Tally { count: 0 })
        .await
        .unwrap();
    assert_eq!(tally, Tally { count: 3 });
    let mut query = db
        .prepare("SELECT round FROM ticks ORDER BY round")
        .unwrap();
    let rounds: Vec<u32> = query
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rounds, [1, 2, 3]);
}
