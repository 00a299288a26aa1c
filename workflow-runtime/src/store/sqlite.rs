//! The SQLite store: one file, WAL mode, a schema versioned with `PRAGMA user_version`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OptionalExtension as _, Transaction, TransactionBehavior, params};

use super::{
    CacheKey, Checkpoint, Interrupt, Progress, RunRecord, RunStatus, StateChange, StateCheckpoint,
    Statement, Store, StoreError, StoreFuture, Timestamp, check_sequence,
};
use crate::events::Event;
use crate::run::RunId;

/// The schema, one migration per version: `MIGRATIONS[n]` takes a database from version
/// `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    r"
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
",
    r"
    -- Where a run's checkpoints continue, so that recording one needs no COUNT(*).
    ALTER TABLE runs ADD COLUMN next_position INTEGER NOT NULL DEFAULT 0;
    UPDATE runs SET next_position =
        (SELECT COALESCE(MAX(position) + 1, 0) FROM checkpoints WHERE run_id = runs.id);
    -- The latest state of a state graph's run: one row per run, replaced at each step.
    CREATE TABLE states (
        run_id TEXT PRIMARY KEY REFERENCES runs (id),
        step INTEGER NOT NULL,
        node TEXT NOT NULL,
        state TEXT NOT NULL,
        rounds TEXT NOT NULL, -- a JSON array, one loop counter per node index
        next TEXT,
        attempts INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL
    ) STRICT;
    -- The outside input a waiting run asks for.
    CREATE TABLE interrupts (
        run_id TEXT PRIMARY KEY REFERENCES runs (id),
        node TEXT NOT NULL,
        request TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
",
    r"
    -- Cached step outputs, across runs: found by (step, version, hash of the key), and
    -- checked against the full input text.
    CREATE TABLE cache (
        step TEXT NOT NULL,
        version INTEGER NOT NULL,
        hash INTEGER NOT NULL,
        input TEXT NOT NULL,
        output TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (step, version, hash)
    ) STRICT;
    CREATE INDEX cache_by_expiry ON cache (expires_at);
    -- The history of a state graph's run that keeps one: per step, the JSON Patch from the
    -- state before the node to the state after it.
    CREATE TABLE state_history (
        run_id TEXT NOT NULL REFERENCES runs (id),
        step INTEGER NOT NULL,
        node TEXT NOT NULL,
        patch TEXT NOT NULL,
        PRIMARY KEY (run_id, step)
    ) STRICT, WITHOUT ROWID;
",
];

/// Keeps runs in one SQLite file.
///
/// The file is in WAL mode with `synchronous = NORMAL`: a write that returned has reached
/// the write-ahead log, so it survives the process being killed at any point; a power
/// loss may lose the last writes but never corrupts the file or splits a transaction.
/// Each [`Store`] method is one transaction. A write that can begin at once (the file's
/// write lock free) runs on the calling thread: tens of microseconds. One that would
/// wait for another connection's write, and every read, runs where blocking is allowed:
/// by the calling worker on a multi-thread runtime (its other tasks move to another
/// worker meanwhile), on tokio's blocking pool elsewhere; it waits up to 5 seconds for
/// the lock.
///
/// Copying the log back into the database (an SQLite *checkpoint*, which waits for the
/// disk twice) is the work of a thread of the store's own, on a connection of its own,
/// once the log holds 1,000 pages; commits go on meanwhile. Only if the log reaches 4,000
/// pages (16 MiB) because that thread cannot keep up does the next write checkpoint
/// first, itself, as SQLite does by default at 1,000, waiting for the thread's own
/// checkpoint to end if one is running. Dropping the last clone of the store
/// ends the thread and closes both connections, the writing one last, which leaves the
/// file whole and the log removed.
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
    shared: Arc<Shared>,
}

/// What the clones of a store share. Dropped, it ends the checkpointer's thread first
/// (which closes that thread's connection), then closes the writing connection, the last.
struct Shared {
    /// The connection, with a busy timeout of zero between transactions: a transaction
    /// that may wait sets [`BUSY_TIMEOUT`] for its own length.
    conn: Mutex<Connection>,
    /// Set by a commit that left the log at [`CHECKPOINT_PAGES_BEHIND`] or more: the
    /// next write checkpoints first, on a thread that may block.
    behind: Arc<AtomicBool>,
    /// Whether writes may run on the calling thread: only while the checkpointer thread
    /// keeps checkpoints out of commits.
    writes_inline: bool,
    checkpointer: Option<Checkpointer>,
}

impl Drop for Shared {
    /// Stops the checkpointer thread before the writing connection closes, so that this
    /// connection closes last: the last connection to close copies the log into the file
    /// and removes it. (Closed the other way round, the log was left behind about once in
    /// fifteen closes.)
    fn drop(&mut self) {
        if let Some(checkpointer) = self.checkpointer.take() {
            let conn = self.conn.get_mut().unwrap_or_else(PoisonError::into_inner);
            // Dropping the hook drops the sender in it: the thread's `recv` fails and it
            // ends, closing its connection.
            let _ = conn.wal_hook(None::<fn(&mut Wal, std::ffi::c_int) -> rusqlite::Result<()>>);
            drop(checkpointer);
        }
    }
}

/// How long a transaction waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The log's length, in pages, at which a commit wakes the checkpointer thread.
const CHECKPOINT_PAGES: i32 = 1000;

/// The log's length at which the checkpointer thread is behind (it cannot finish while
/// commits keep coming): the next write checkpoints itself, holding the store's
/// connection, so that the log starts over.
const CHECKPOINT_PAGES_BEHIND: i32 = 4 * CHECKPOINT_PAGES;

/// What a transaction does, which decides how it starts.
#[derive(Clone, Copy)]
enum Access {
    /// Takes the file's write lock when it begins (`BEGIN IMMEDIATE`), waiting for
    /// another connection's write. One that read first and then asked for the lock
    /// would fail at once, unwaited, whenever another connection (another process, or
    /// the checkpointer) held it at that moment.
    Write,
    /// Reads one snapshot of the file (`BEGIN DEFERRED`).
    Read,
}

impl Access {
    fn behavior(self) -> TransactionBehavior {
        match self {
            Self::Write => TransactionBehavior::Immediate,
            Self::Read => TransactionBehavior::Deferred,
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl Shared {
    /// Runs the write `f` on the calling thread if it can start without waiting: the
    /// connection is free, the file's write lock too, and no checkpoint is due. Gives
    /// `f` back, untouched, otherwise.
    fn write_now<T, F>(&self, f: F) -> Result<Result<T, StoreError>, F>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    {
        if !self.writes_inline || self.behind.load(Ordering::Relaxed) {
            return Err(f);
        }
        let mut conn = match self.conn.try_lock() {
            Ok(conn) => conn,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(f),
        };
        match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => Ok(commit(tx, f)),
            Err(error) if is_busy(&error) => Err(f),
            Err(error) => Ok(Err(backend(error))),
        }
    }

    /// Runs `f` in a transaction that waits, as long as [`BUSY_TIMEOUT`], for another
    /// connection's write; a write checkpoints first if one is due.
    fn run_waiting<T>(
        &self,
        access: Access,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A panic inside a transaction rolls it back (the transaction is dropped), so a
        // poisoned lock guards a consistent database.
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        if matches!(access, Access::Write) && self.behind.swap(false, Ordering::Relaxed) {
            catch_up(&conn);
        }
        let result = conn
            .transaction_with_behavior(access.behavior())
            .map_err(backend)
            .and_then(|tx| commit(tx, f));
        let reset = conn.busy_timeout(Duration::ZERO).map_err(backend);
        result.and_then(|value| reset.map(|()| value))
    }
}

/// Checkpoints the log on the writing connection `conn`, which the caller holds: this
/// store's commits wait until the checkpoint is done, so that the next write starts the log
/// over. SQLite does not wait for another connection's checkpoint (the checkpointer
/// thread's, running while commits kept coming, which is why the log is long): this waits
/// for it, as long as [`BUSY_TIMEOUT`], and then copies what it left.
fn catch_up(conn: &Connection) {
    let give_up = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            Ok(_) => return,
            Err(error) if is_busy(&error) => {
                if Instant::now() >= give_up {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(error) => {
                tracing::warn!(%error, "checkpointing the SQLite write-ahead log failed");
                return;
            }
        }
    }
}

/// Runs `f` in `tx` and commits; an error from `f` rolls back (the transaction drops).
fn commit<T>(
    tx: Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let value = f(&tx)?;
    tx.commit().map_err(backend)?;
    Ok(value)
}

/// The thread that copies the write-ahead log into the database, so that commits do not.
struct Checkpointer {
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on a connection of its own to the file at `path` and hooks
    /// `conn`'s commits to wake it, and to raise `behind` when the log is long. `None`
    /// (commits checkpoint themselves, as SQLite does by default) when the database is
    /// not in WAL mode (`:memory:`) or the thread cannot start.
    fn start(
        conn: &mut Connection,
        path: &Path,
        behind: &Arc<AtomicBool>,
    ) -> Result<Option<Self>, StoreError> {
        let own = Connection::open(path).map_err(backend)?;
        own.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        let mode: String = own
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(None);
        }
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let Ok(thread) = std::thread::Builder::new()
            .name("workflow-sqlite-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    match own.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
                        Ok(_) => {}
                        // Another connection is checkpointing or resetting the log: the
                        // next commit past the mark wakes this thread again.
                        Err(error) if is_busy(&error) => {}
                        Err(error) => {
                            tracing::warn!(%error, "checkpointing the SQLite write-ahead log failed");
                        }
                    }
                }
            })
        else {
            return Ok(None);
        };
        let behind = Arc::clone(behind);
        conn.wal_hook(Some(move |_: &mut Wal, pages: std::ffi::c_int| {
            if pages >= CHECKPOINT_PAGES {
                // Full: the thread has a wake-up pending already.
                let _ = wake.try_send(());
            }
            if pages >= CHECKPOINT_PAGES_BEHIND {
                behind.store(true, Ordering::Relaxed);
            }
            Ok(())
        }))
        .map_err(backend)?;
        Ok(Some(Self {
            thread: Some(thread),
        }))
    }
}

impl Drop for Checkpointer {
    /// Waits for the thread to end, once the writing connection's hook (and the sender in
    /// it) is gone.
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl SqliteStore {
    /// Opens (or creates) the store in the file at `path`, bringing its schema up to date.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened, is not an SQLite database, or was written by a
    /// newer version of this crate.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let mut conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        migrate(&mut conn)?;
        let behind = Arc::new(AtomicBool::new(false));
        let checkpointer = Checkpointer::start(&mut conn, path, &behind)?;
        conn.busy_timeout(Duration::ZERO).map_err(backend)?;
        Ok(Self {
            shared: Arc::new(Shared {
                conn: Mutex::new(conn),
                behind,
                writes_inline: checkpointer.is_some(),
                checkpointer,
            }),
        })
    }

    /// The schema version of an up-to-date store.
    #[allow(clippy::cast_possible_truncation)] // a handful of migrations
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    /// Runs `f` in a transaction that writes (see [`Access::Write`]).
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        self.transaction(Access::Write, f)
    }

    /// Runs `f` in a transaction that only reads.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        self.transaction(Access::Read, f)
    }

    /// Runs `f` in one transaction.
    ///
    /// A write that can start without waiting runs on the calling thread: a run's writes
    /// are short (tens of microseconds, about what serialising the same outputs took),
    /// and a hop to another thread and back costs as much again. Whatever may wait (a
    /// read, a write lock another connection holds, a checkpoint that is due) runs where
    /// blocking is allowed: on a multi-thread runtime the calling worker runs it after
    /// handing its other tasks to another worker (`block_in_place`); elsewhere tokio's
    /// blocking pool does.
    fn transaction<T: Send + 'static>(
        &self,
        access: Access,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let f = match access {
                Access::Write => match shared.write_now(f) {
                    Ok(done) => return done,
                    Err(f) => f,
                },
                Access::Read => f,
            };
            let wait = move || shared.run_waiting(access, f);
            let multi_thread = tokio::runtime::Handle::try_current().is_ok_and(|handle| {
                handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
            });
            if multi_thread {
                tokio::task::block_in_place(wait)
            } else {
                tokio::task::spawn_blocking(wait)
                    .await
                    .map_err(|error| StoreError::Backend(Box::new(error)))?
            }
        })
    }
}

fn backend(error: rusqlite::Error) -> StoreError {
    StoreError::Backend(Box::new(error))
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    // Immediate: two processes opening a new file at once migrate it one after the other,
    // the second finding it up to date.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    let version: u32 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(backend)?;
    let known = MIGRATIONS.len();
    let current = usize::try_from(version).unwrap_or(usize::MAX);
    if current > known {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {version}, newer than this program's {known}"
        )));
    }
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

/// A run's row as writes see it: its status, and where its log and checkpoints continue.
/// Writes advance it in memory; [`Head::save`] writes it back once per transaction.
struct Head {
    id: String,
    status: RunStatus,
    next_seq: u64,
    next_position: i64,
}

impl Head {
    /// The run's head, whatever its status; `UnknownRun` if there is none.
    fn load(tx: &Transaction<'_>, run: RunId) -> Result<Self, StoreError> {
        let id = run.to_string();
        let row: Option<(String, i64, i64)> = tx
            .prepare_cached("SELECT status, next_seq, next_position FROM runs WHERE id = ?1")
            .map_err(backend)?
            .query_row([&id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .optional()
            .map_err(backend)?;
        let (status, next_seq, next_position) = row.ok_or(StoreError::UnknownRun(run))?;
        Ok(Self {
            id,
            status: parse_status(&status)?,
            next_seq: u64::try_from(next_seq)
                .map_err(|_| StoreError::Corrupt(format!("sequence number {next_seq}")))?,
            next_position,
        })
    }

    /// The head of a run that takes writes: `Ended` if it has ended.
    fn open(tx: &Transaction<'_>, run: RunId) -> Result<Self, StoreError> {
        let head = Self::load(tx, run)?;
        if head.status.is_final() {
            return Err(StoreError::Ended(run));
        }
        Ok(head)
    }

    /// Appends `events`, which must continue the log.
    fn insert_events(
        &mut self,
        tx: &Transaction<'_>,
        run: RunId,
        events: &[Event],
    ) -> Result<(), StoreError> {
        check_sequence(run, self.next_seq, events)?;
        let mut insert = tx
            .prepare_cached("INSERT INTO events (run_id, seq, body) VALUES (?1, ?2, ?3)")
            .map_err(backend)?;
        for event in events {
            let body =
                serde_json::to_string(event).map_err(|e| StoreError::Backend(Box::new(e)))?;
            insert
                .execute(params![self.id, seq(event.seq)?, body])
                .map_err(backend)?;
        }
        self.next_seq += events.len() as u64;
        Ok(())
    }

    /// Records completed nodes after the run's earlier ones. A node with a checkpoint
    /// already (or twice in the batch) is `AlreadyCompleted`: the primary key refuses the
    /// row, and the caller's error rolls the transaction back.
    fn insert_checkpoints(
        &mut self,
        tx: &Transaction<'_>,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
    ) -> Result<(), StoreError> {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO checkpoints (run_id, node, position, output, attempts, started_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (run_id, node) DO NOTHING",
            )
            .map_err(backend)?;
        for checkpoint in checkpoints {
            let inserted = insert
                .execute(params![
                    self.id,
                    checkpoint.node,
                    self.next_position,
                    to_json(&checkpoint.output),
                    checkpoint.attempts,
                    checkpoint.started_at.0,
                    checkpoint.finished_at.0,
                ])
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyCompleted {
                    run,
                    node: checkpoint.node,
                });
            }
            for statement in &checkpoint.writes {
                run_statement(tx, statement).map_err(|error| StoreError::Statement {
                    run,
                    node: checkpoint.node.clone(),
                    sql: statement.sql.clone(),
                    error: error.to_string(),
                })?;
            }
            self.next_position += 1;
        }
        Ok(())
    }

    /// Replaces the run's state checkpoint.
    fn replace_state(
        &self,
        tx: &Transaction<'_>,
        state: &StateCheckpoint,
    ) -> Result<(), StoreError> {
        let rounds =
            serde_json::to_string(&state.rounds).map_err(|e| StoreError::Backend(Box::new(e)))?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO states
                 (run_id, step, node, state, rounds, next, attempts, started_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(backend)?
        .execute(params![
            self.id,
            state.step,
            state.node,
            to_json(&state.state),
            rounds,
            state.next,
            state.attempts,
            state.started_at.0,
            state.finished_at.0,
        ])
        .map_err(backend)?;
        if let Some(patch) = &state.change {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO state_history (run_id, step, node, patch)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(backend)?
            .execute(params![self.id, state.step, state.node, to_json(patch)])
            .map_err(backend)?;
        }
        Ok(())
    }

    /// Ends the run (or sets its status, which [`Store::finish_run`] allows), with its
    /// output or error, and writes the head back.
    fn end(
        &self,
        tx: &Transaction<'_>,
        status: RunStatus,
        output: Option<&serde_json::Value>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        if status.is_final() {
            tx.prepare_cached("DELETE FROM interrupts WHERE run_id = ?1")
                .map_err(backend)?
                .execute([&self.id])
                .map_err(backend)?;
        }
        if status == RunStatus::Succeeded {
            // The output is the final state: keep it once (`state` reads it back).
            tx.prepare_cached("UPDATE states SET state = 'null' WHERE run_id = ?1")
                .map_err(backend)?
                .execute([&self.id])
                .map_err(backend)?;
        }
        tx.prepare_cached(
            "UPDATE runs SET status = ?2, output = ?3, error = ?4, next_seq = ?5,
                 next_position = ?6, updated_at = ?7
             WHERE id = ?1",
        )
        .map_err(backend)?
        .execute(params![
            self.id,
            status.as_str(),
            output.map(to_json),
            error,
            seq(self.next_seq)?,
            self.next_position,
            Timestamp::now().0,
        ])
        .map_err(backend)?;
        Ok(())
    }

    /// Writes the head back: status, sequence, position, and `updated_at` (now).
    fn save(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        tx.prepare_cached(
            "UPDATE runs SET status = ?2, next_seq = ?3, next_position = ?4, updated_at = ?5
             WHERE id = ?1",
        )
        .map_err(backend)?
        .execute(params![
            self.id,
            self.status.as_str(),
            seq(self.next_seq)?,
            self.next_position,
            Timestamp::now().0,
        ])
        .map_err(backend)?;
        Ok(())
    }
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

/// A `states` row (columns in table order, without `run_id`) as a state checkpoint.
fn state_checkpoint(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<StateCheckpoint, StoreError>> {
    let state: String = row.get(2)?;
    let rounds: String = row.get(3)?;
    let parsed = (|| {
        Ok(StateCheckpoint {
            step: row.get(0).map_err(backend)?,
            node: row.get(1).map_err(backend)?,
            state: json(&state)?,
            rounds: serde_json::from_str(&rounds)
                .map_err(|e| StoreError::Corrupt(format!("loop counters: {e}")))?,
            next: row.get(4).map_err(backend)?,
            attempts: row.get(5).map_err(backend)?,
            started_at: Timestamp(row.get(6).map_err(backend)?),
            finished_at: Timestamp(row.get(7).map_err(backend)?),
            change: None,
            writes: Vec::new(),
        })
    })();
    Ok(parsed)
}

/// Runs a transactional step's statement: `$N` binds the N-th parameter wherever it is
/// (SQLite numbers named parameters by first appearance; this binds them by name).
fn run_statement(tx: &Transaction<'_>, statement: &Statement) -> rusqlite::Result<usize> {
    use rusqlite::types::Value as Sql;
    let mut prepared = tx.prepare_cached(&statement.sql)?;
    for (i, value) in statement.params.iter().enumerate() {
        let index = match prepared.parameter_index(&format!("${}", i + 1))? {
            Some(index) => index,
            None => i + 1,
        };
        let value = match value {
            serde_json::Value::Null => Sql::Null,
            serde_json::Value::Bool(b) => Sql::Integer(i64::from(*b)),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Sql::Integer(i),
                (None, Some(f)) => Sql::Real(f),
                (None, None) => Sql::Text(n.to_string()),
            },
            serde_json::Value::String(text) => Sql::Text(text.clone()),
            other => Sql::Text(other.to_string()),
        };
        prepared.raw_bind_parameter(index, value)?;
    }
    prepared.raw_execute()
}

impl Store for SqliteStore {
    fn create_run(&self, run: RunRecord) -> StoreFuture<'_, ()> {
        self.write(move |tx| {
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO runs
                         (id, workflow, graph_hash, input, status, output, error, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (id) DO NOTHING",
                )
                .map_err(backend)?
                .execute(params![
                    run.id.to_string(),
                    run.workflow,
                    run.graph_hash,
                    to_json(&run.input),
                    run.status.as_str(),
                    run.output.as_ref().map(to_json),
                    run.error,
                    run.created_at.0,
                    run.updated_at.0,
                ])
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::DuplicateRun(run.id));
            }
            Ok(())
        })
    }

    fn append_events(&self, run: RunId, events: Vec<Event>) -> StoreFuture<'_, ()> {
        self.write(move |tx| {
            let mut head = Head::open(tx, run)?;
            if events.is_empty() {
                return Ok(());
            }
            head.insert_events(tx, run, &events)?;
            head.save(tx)
        })
    }

    fn checkpoint(
        &self,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.write(move |tx| {
            let mut head = Head::open(tx, run)?;
            head.insert_checkpoints(tx, run, checkpoints)?;
            head.insert_events(tx, run, &events)?;
            head.save(tx)
        })
    }

    fn save_state(
        &self,
        run: RunId,
        state: StateCheckpoint,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.write(move |tx| {
            let mut head = Head::open(tx, run)?;
            head.replace_state(tx, &state)?;
            for statement in &state.writes {
                run_statement(tx, statement).map_err(|error| StoreError::Statement {
                    run,
                    node: state.node.clone(),
                    sql: statement.sql.clone(),
                    error: error.to_string(),
                })?;
            }
            head.insert_events(tx, run, &events)?;
            head.save(tx)
        })
    }

    fn state(&self, run: RunId) -> StoreFuture<'_, Option<StateCheckpoint>> {
        self.read(move |tx| {
            exists(tx, run)?;
            // A succeeded run's final state is its output.
            tx.query_row(
                "SELECT s.step, s.node,
                        CASE WHEN r.status = 'succeeded' THEN COALESCE(r.output, s.state)
                             ELSE s.state END,
                        s.rounds, s.next, s.attempts, s.started_at, s.finished_at
                 FROM states s JOIN runs r ON r.id = s.run_id WHERE s.run_id = ?1",
                [run.to_string()],
                state_checkpoint,
            )
            .optional()
            .map_err(backend)?
            .transpose()
        })
    }

    fn suspend(&self, run: RunId, interrupt: Interrupt, events: Vec<Event>) -> StoreFuture<'_, ()> {
        self.write(move |tx| {
            let mut head = Head::open(tx, run)?;
            head.insert_events(tx, run, &events)?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO interrupts (run_id, node, request, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(backend)?
            .execute(params![
                head.id,
                interrupt.node,
                to_json(&interrupt.request),
                interrupt.created_at.0,
            ])
            .map_err(backend)?;
            head.status = RunStatus::Waiting;
            head.save(tx)
        })
    }

    fn interrupt(&self, run: RunId) -> StoreFuture<'_, Option<Interrupt>> {
        self.read(move |tx| {
            let head = Head::load(tx, run)?;
            if head.status != RunStatus::Waiting {
                return Ok(None);
            }
            let row: Option<(String, String, i64)> = tx
                .query_row(
                    "SELECT node, request, created_at FROM interrupts WHERE run_id = ?1",
                    [&head.id],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(backend)?;
            row.map(|(node, request, created)| {
                Ok(Interrupt {
                    node,
                    request: json(&request)?,
                    created_at: Timestamp(created),
                })
            })
            .transpose()
        })
    }

    fn answer(
        &self,
        run: RunId,
        node: String,
        progress: Progress,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.write(move |tx| {
            let mut head = Head::load(tx, run)?;
            let waiting: Option<String> = if head.status == RunStatus::Waiting {
                tx.query_row(
                    "SELECT node FROM interrupts WHERE run_id = ?1",
                    [&head.id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?
            } else {
                None
            };
            super::check_answer(run, head.status, waiting.as_deref(), &node)?;
            match progress {
                Progress::Nodes(checkpoints) => head.insert_checkpoints(tx, run, checkpoints)?,
                Progress::State(state) => head.replace_state(tx, &state)?,
            }
            head.insert_events(tx, run, &events)?;
            tx.prepare_cached("DELETE FROM interrupts WHERE run_id = ?1")
                .map_err(backend)?
                .execute([&head.id])
                .map_err(backend)?;
            head.status = RunStatus::Running;
            head.save(tx)
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
        self.write(move |tx| {
            let mut head = Head::open(tx, run)?;
            head.insert_events(tx, run, &events)?;
            head.end(tx, status, output.as_ref(), error.as_deref())
        })
    }

    fn finish_run_after(
        &self,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
        events: Vec<Event>,
        _checkpointed: usize,
        status: RunStatus,
        output: Option<serde_json::Value>,
        error: Option<String>,
    ) -> StoreFuture<'_, ()> {
        // One transaction: the events are one log whichever write they go with.
        self.write(move |tx| {
            let mut head = Head::open(tx, run)?;
            head.insert_checkpoints(tx, run, checkpoints)?;
            head.insert_events(tx, run, &events)?;
            head.end(tx, status, output.as_ref(), error.as_deref())
        })
    }

    fn run(&self, run: RunId) -> StoreFuture<'_, RunRecord> {
        self.read(move |tx| {
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
        self.read(move |tx| {
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

    fn count_runs(&self, status: RunStatus) -> StoreFuture<'_, u64> {
        self.read(move |tx| {
            let count: i64 = tx
                .prepare_cached("SELECT COUNT(*) FROM runs WHERE status = ?1")
                .map_err(backend)?
                .query_row([status.as_str()], |row| row.get(0))
                .map_err(backend)?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    fn checkpoints(&self, run: RunId) -> StoreFuture<'_, Vec<Checkpoint>> {
        self.read(move |tx| {
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
                    writes: Vec::new(),
                })
            })
            .collect()
        })
    }

    fn events(&self, run: RunId, from: u64) -> StoreFuture<'_, Vec<Event>> {
        self.read(move |tx| {
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

    fn history(&self, run: RunId) -> StoreFuture<'_, Vec<StateChange>> {
        self.read(move |tx| {
            exists(tx, run)?;
            let mut query = tx
                .prepare_cached(
                    "SELECT step, node, patch FROM state_history WHERE run_id = ?1 ORDER BY step",
                )
                .map_err(backend)?;
            let rows = query
                .query_map([run.to_string()], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get::<_, String>(2)?))
                })
                .map_err(backend)?;
            rows.map(|row| {
                let (step, node, patch) = row.map_err(backend)?;
                Ok(StateChange {
                    step,
                    node,
                    patch: json(&patch)?,
                })
            })
            .collect()
        })
    }

    fn cached(&self, key: CacheKey, now: Timestamp) -> StoreFuture<'_, Option<serde_json::Value>> {
        self.read(move |tx| {
            let row: Option<(String, String, i64)> = tx
                .prepare_cached(
                    "SELECT input, output, expires_at FROM cache
                     WHERE step = ?1 AND version = ?2 AND hash = ?3",
                )
                .map_err(backend)?
                .query_row(params![key.step, key.version, key_hash(&key)], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()
                .map_err(backend)?;
            match row {
                Some((input, output, expires_at)) if input == key.input && expires_at > now.0 => {
                    json(&output).map(Some)
                }
                _ => Ok(None),
            }
        })
    }

    fn cache(
        &self,
        key: CacheKey,
        output: serde_json::Value,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreFuture<'_, ()> {
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM cache WHERE expires_at <= ?1")
                .map_err(backend)?
                .execute([now.0])
                .map_err(backend)?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO cache (step, version, hash, input, output, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(backend)?
            .execute(params![
                key.step,
                key.version,
                key_hash(&key),
                key.input,
                to_json(&output),
                expires_at.0
            ])
            .map_err(backend)?;
            Ok(())
        })
    }

    fn runs_statements(&self) -> bool {
        true
    }
}

/// A cache key's hash as SQLite stores it (a signed 64-bit integer, bit for bit).
#[allow(clippy::cast_possible_wrap)]
fn key_hash(key: &CacheKey) -> i64 {
    key.hash64() as i64
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
