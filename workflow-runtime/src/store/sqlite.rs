//! The SQLite store: one file, WAL mode, a schema versioned with `PRAGMA user_version`.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use super::{
    Checkpoint, RunRecord, RunStatus, Store, StoreError, StoreFuture, Timestamp, check_sequence,
};
use crate::events::Event;
use crate::run::RunId;

/// The schema, one migration per version: `MIGRATIONS[n]` takes a database from version
/// `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[r"
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        graph_hash TEXT NOT NULL,
        input TEXT NOT NULL,
        status TEXT NOT NULL,
        output TEXT,
        error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        next_seq INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX runs_by_creation ON runs (created_at DESC, id DESC);
    CREATE TABLE checkpoints (
        run_id TEXT NOT NULL REFERENCES runs (id),
        node TEXT NOT NULL,
        position INTEGER NOT NULL,
        output TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        PRIMARY KEY (run_id, node)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE events (
        run_id TEXT NOT NULL REFERENCES runs (id),
        seq INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) STRICT, WITHOUT ROWID;
"];

/// Keeps runs in one SQLite file.
///
/// The file is in WAL mode with `synchronous = NORMAL`: a write that returned has reached
/// the write-ahead log, so it survives the process being killed at any point; a power
/// loss may lose the last writes but never corrupts the file or splits a transaction.
/// Each [`Store`] method is one transaction, run on tokio's blocking pool.
///
/// # Examples
///
/// ```
/// use workflow::store::{SqliteStore, Store};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), workflow::store::StoreError> {
/// let dir = std::env::temp_dir().join(format!("workflow-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let store = SqliteStore::open(dir.join("runs.db"))?;
/// assert!(store.runs(10).await?.is_empty());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (or creates) the store in the file at `path`, bringing its schema up to date.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened, is not an SQLite database, or was written by a
    /// newer version of this crate.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The schema version of an up-to-date store.
    #[allow(clippy::cast_possible_truncation)] // a handful of migrations
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    /// Runs `f` in one transaction on the blocking pool.
    fn transaction<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let conn = Arc::clone(&self.conn);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                // A panic inside a transaction rolls it back (the transaction is dropped),
                // so a poisoned lock guards a consistent database.
                let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                let tx = conn.transaction().map_err(backend)?;
                let value = f(&tx)?;
                tx.commit().map_err(backend)?;
                Ok(value)
            })
            .await
            .map_err(|error| StoreError::Backend(Box::new(error)))?
        })
    }
}

fn backend(error: rusqlite::Error) -> StoreError {
    StoreError::Backend(Box::new(error))
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(backend)?;
    let known = MIGRATIONS.len();
    let current = usize::try_from(version).unwrap_or(usize::MAX);
    if current > known {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {version}, newer than this program's {known}"
        )));
    }
    let tx = conn.transaction().map_err(backend)?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(migration).map_err(backend)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(index + 1).unwrap_or(i64::MAX),
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

/// The run's next event sequence number and status; `UnknownRun` if there is none.
fn open_run(tx: &Transaction<'_>, run: RunId) -> Result<u64, StoreError> {
    let row: Option<(i64, String)> = tx
        .query_row(
            "SELECT next_seq, status FROM runs WHERE id = ?1",
            [run.to_string()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(backend)?;
    let (next, status) = row.ok_or(StoreError::UnknownRun(run))?;
    if parse_status(&status)?.is_final() {
        return Err(StoreError::Ended(run));
    }
    u64::try_from(next).map_err(|_| StoreError::Corrupt(format!("sequence number {next}")))
}

fn insert_events(
    tx: &Transaction<'_>,
    run: RunId,
    next: u64,
    events: &[Event],
) -> Result<(), StoreError> {
    check_sequence(run, next, events)?;
    let id = run.to_string();
    let mut insert = tx
        .prepare_cached("INSERT INTO events (run_id, seq, body) VALUES (?1, ?2, ?3)")
        .map_err(backend)?;
    for event in events {
        let body = serde_json::to_string(event).map_err(|e| StoreError::Backend(Box::new(e)))?;
        insert
            .execute(params![id, seq(event.seq)?, body])
            .map_err(backend)?;
    }
    if !events.is_empty() {
        tx.execute(
            "UPDATE runs SET next_seq = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, seq(next + events.len() as u64)?, Timestamp::now().0],
        )
        .map_err(backend)?;
    }
    Ok(())
}

fn seq(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("sequence number {value}")))
}

fn parse_status(text: &str) -> Result<RunStatus, StoreError> {
    RunStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("run status `{text}`")))
}

fn json(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_json(value: &serde_json::Value) -> String {
    value.to_string()
}

const RUN_COLUMNS: &str =
    "id, workflow, graph_hash, input, status, output, error, created_at, updated_at";

/// A `runs` row (columns in `RUN_COLUMNS` order) as a record.
fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<RunRecord, StoreError>> {
    let id: String = row.get(0)?;
    let input: String = row.get(3)?;
    let status: String = row.get(4)?;
    let output: Option<String> = row.get(5)?;
    let parsed = (|| {
        Ok(RunRecord {
            id: id
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("run id `{id}`")))?,
            workflow: row.get(1).map_err(backend)?,
            graph_hash: row.get(2).map_err(backend)?,
            input: json(&input)?,
            status: parse_status(&status)?,
            output: output.as_deref().map(json).transpose()?,
            error: row.get(6).map_err(backend)?,
            created_at: Timestamp(row.get(7).map_err(backend)?),
            updated_at: Timestamp(row.get(8).map_err(backend)?),
        })
    })();
    Ok(parsed)
}

impl Store for SqliteStore {
    fn create_run(&self, run: RunRecord) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            let exists: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
                    [run.id.to_string()],
                    |row| row.get(0),
                )
                .map_err(backend)?;
            if exists {
                return Err(StoreError::DuplicateRun(run.id));
            }
            tx.execute(
                "INSERT INTO runs (id, workflow, graph_hash, input, status, output, error, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    run.id.to_string(),
                    run.workflow,
                    run.graph_hash,
                    to_json(&run.input),
                    run.status.as_str(),
                    run.output.as_ref().map(to_json),
                    run.error,
                    run.created_at.0,
                    run.updated_at.0,
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn append_events(&self, run: RunId, events: Vec<Event>) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            let next = open_run(tx, run)?;
            insert_events(tx, run, next, &events)
        })
    }

    fn checkpoint(
        &self,
        run: RunId,
        checkpoint: Checkpoint,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            let next = open_run(tx, run)?;
            let id = run.to_string();
            let (done, position): (bool, i64) = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM checkpoints WHERE run_id = ?1 AND node = ?2),
                            (SELECT COUNT(*) FROM checkpoints WHERE run_id = ?1)",
                    params![id, checkpoint.node],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(backend)?;
            if done {
                return Err(StoreError::AlreadyCompleted {
                    run,
                    node: checkpoint.node,
                });
            }
            tx.execute(
                "INSERT INTO checkpoints (run_id, node, position, output, attempts, started_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    checkpoint.node,
                    position,
                    to_json(&checkpoint.output),
                    checkpoint.attempts,
                    checkpoint.started_at.0,
                    checkpoint.finished_at.0,
                ],
            )
            .map_err(backend)?;
            insert_events(tx, run, next, &events)
        })
    }

    fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        output: Option<serde_json::Value>,
        error: Option<String>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            let next = open_run(tx, run)?;
            insert_events(tx, run, next, &events)?;
            tx.execute(
                "UPDATE runs SET status = ?2, output = ?3, error = ?4, updated_at = ?5 WHERE id = ?1",
                params![
                    run.to_string(),
                    status.as_str(),
                    output.as_ref().map(to_json),
                    error,
                    Timestamp::now().0,
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn run(&self, run: RunId) -> StoreFuture<'_, RunRecord> {
        self.transaction(move |tx| {
            tx.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [run.to_string()],
                record,
            )
            .optional()
            .map_err(backend)?
            .ok_or(StoreError::UnknownRun(run))?
        })
    }

    fn runs(&self, limit: usize) -> StoreFuture<'_, Vec<RunRecord>> {
        self.transaction(move |tx| {
            let mut query = tx
                .prepare(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id DESC LIMIT ?1"
                ))
                .map_err(backend)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = query.query_map([limit], record).map_err(backend)?;
            rows.map(|row| row.map_err(backend)?).collect()
        })
    }

    fn checkpoints(&self, run: RunId) -> StoreFuture<'_, Vec<Checkpoint>> {
        self.transaction(move |tx| {
            let id = run.to_string();
            exists(tx, run)?;
            let mut query = tx
                .prepare(
                    "SELECT node, output, attempts, started_at, finished_at FROM checkpoints
                     WHERE run_id = ?1 ORDER BY position",
                )
                .map_err(backend)?;
            let rows = query
                .query_map([id], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, u32>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, i64>(4)?,
                    ))
                })
                .map_err(backend)?;
            rows.map(|row| {
                let (node, output, attempts, started, finished) = row.map_err(backend)?;
                Ok(Checkpoint {
                    node,
                    output: json(&output)?,
                    attempts,
                    started_at: Timestamp(started),
                    finished_at: Timestamp(finished),
                })
            })
            .collect()
        })
    }

    fn events(&self, run: RunId, from: u64) -> StoreFuture<'_, Vec<Event>> {
        self.transaction(move |tx| {
            exists(tx, run)?;
            let mut query = tx
                .prepare_cached(
                    "SELECT body FROM events WHERE run_id = ?1 AND seq >= ?2 ORDER BY seq",
                )
                .map_err(backend)?;
            let from = i64::try_from(from).unwrap_or(i64::MAX);
            let rows = query
                .query_map(params![run.to_string(), from], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(backend)?;
            rows.map(|body| {
                let body = body.map_err(backend)?;
                serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
        })
    }
}

fn exists(tx: &Transaction<'_>, run: RunId) -> Result<(), StoreError> {
    let found: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
            [run.to_string()],
            |row| row.get(0),
        )
        .map_err(backend)?;
    if found {
        Ok(())
    } else {
        Err(StoreError::UnknownRun(run))
    }
}
