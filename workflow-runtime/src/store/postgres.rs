//! The PostgreSQL store: the same semantics as the SQLite one, for processes on several
//! machines sharing one database. Schema versioned in a table of its own.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::{
    CacheKey, Checkpoint, Interrupt, Progress, RunRecord, RunStatus, StateChange, StateCheckpoint,
    Store, StoreError, StoreFuture, Timestamp,
};
use crate::events::Event;
use crate::run::RunId;

/// The schema, one migration per version; a store applies the ones its database lacks.
const MIGRATIONS: &[&str] = &[r"
    CREATE TABLE runs (
        id UUID PRIMARY KEY,
        workflow TEXT NOT NULL,
        graph_hash TEXT NOT NULL,
        input JSONB NOT NULL,
        status TEXT NOT NULL,
        output JSONB,
        error TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        next_seq BIGINT NOT NULL DEFAULT 0,
        next_position BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_by_creation ON runs (created_at DESC, id DESC);
    CREATE INDEX runs_by_status ON runs (status);
    CREATE TABLE checkpoints (
        run_id UUID NOT NULL REFERENCES runs (id),
        node TEXT NOT NULL,
        position BIGINT NOT NULL,
        output JSONB NOT NULL,
        attempts INTEGER NOT NULL,
        started_at BIGINT NOT NULL,
        finished_at BIGINT NOT NULL,
        PRIMARY KEY (run_id, node)
    );
    CREATE TABLE events (
        run_id UUID NOT NULL REFERENCES runs (id),
        seq BIGINT NOT NULL,
        body JSONB NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE states (
        run_id UUID PRIMARY KEY REFERENCES runs (id),
        step INTEGER NOT NULL,
        node TEXT NOT NULL,
        state JSONB NOT NULL,
        rounds JSONB NOT NULL,
        next TEXT,
        attempts INTEGER NOT NULL,
        started_at BIGINT NOT NULL,
        finished_at BIGINT NOT NULL
    );
    CREATE TABLE state_history (
        run_id UUID NOT NULL REFERENCES runs (id),
        step INTEGER NOT NULL,
        node TEXT NOT NULL,
        patch JSONB NOT NULL,
        PRIMARY KEY (run_id, step)
    );
    CREATE TABLE interrupts (
        run_id UUID PRIMARY KEY REFERENCES runs (id),
        node TEXT NOT NULL,
        request JSONB NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE cache (
        step TEXT NOT NULL,
        version INTEGER NOT NULL,
        hash BIGINT NOT NULL,
        input TEXT NOT NULL,
        output JSONB NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (step, version, hash)
    );
    CREATE INDEX cache_by_expiry ON cache (expires_at);
"];

/// Keeps runs in a PostgreSQL database, shared by any number of processes.
///
/// Every [`Store`] method is one transaction; a write to a run first locks the run's row
/// (`SELECT ... FOR UPDATE`), so writers of one run in several processes take turns, and
/// the same rules hold as on SQLite: events are gapless, a node completes once, an ended
/// run takes no more writes. A committed write is durable as PostgreSQL's settings make it
/// (with the default `synchronous_commit = on`, it is on disk before the call returns).
///
/// The tables live in the connection's schema (`search_path`), or in the one
/// [`PostgresStore::connect_in_schema`] names, so several stores can share a database.
///
/// # Examples
///
/// ```no_run
/// use workflow::store::{PostgresStore, Store};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), workflow::store::StoreError> {
/// let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/test").await?;
/// println!("{} runs", store.runs(usize::MAX).await?.len());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

fn backend(error: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(Box::new(error))
}

fn pool_error(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(error))
}

fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// How many connections a store keeps open at most.
const POOL_SIZE: usize = 16;

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`), bringing the
    /// schema up to date.
    ///
    /// # Errors
    ///
    /// When the URL does not parse, the database cannot be reached, or its schema was
    /// written by a newer version of this crate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(url, None).await
    }

    /// Connects to the database at `url`, keeping the tables in `schema` (created if
    /// missing): several stores, or several test runs, can share one database.
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect`]; also when `schema` is not a plain identifier.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || schema.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(StoreError::Backend(
                format!("`{schema}` is not a schema name (letters, digits and `_`)").into(),
            ));
        }
        Self::open(url, Some(schema)).await
    }

    async fn open(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(backend)?;
        if let Some(schema) = schema {
            // Create the schema first, on a connection of its own, then point every pooled
            // connection at it.
            let (client, connection) = config.connect(NoTls).await.map_err(backend)?;
            let task = tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(backend)?;
            drop(client);
            let _ = task.await;
            config.options(format!("-c search_path={schema}"));
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(pool_error)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// The schema version of an up-to-date store.
    #[allow(clippy::cast_possible_truncation)] // a handful of migrations
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(backend)?;
        // One migrator at a time, across processes.
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(7720419);
             CREATE TABLE IF NOT EXISTS workflow_schema (version INTEGER NOT NULL);",
        )
        .await
        .map_err(backend)?;
        let row = tx
            .query_opt("SELECT version FROM workflow_schema", &[])
            .await
            .map_err(backend)?;
        let current: i32 = if let Some(row) = row {
            row.get(0)
        } else {
            tx.execute("INSERT INTO workflow_schema (version) VALUES (0)", &[])
                .await
                .map_err(backend)?;
            0
        };
        let current = usize::try_from(current).unwrap_or(usize::MAX);
        if current > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!(
                "the database has schema version {current}, newer than this program's {}",
                MIGRATIONS.len()
            )));
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
            tx.batch_execute(migration).await.map_err(backend)?;
            let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
            tx.execute("UPDATE workflow_schema SET version = $1", &[&version])
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    /// Runs `f` in one transaction, committed when it returns `Ok`.
    fn transaction<'a, T, F>(&'a self, f: F) -> StoreFuture<'a, T>
    where
        T: Send + 'a,
        F: for<'t> FnOnce(&'t Transaction<'t>) -> StoreFuture<'t, T> + Send + 'a,
    {
        Box::pin(async move {
            let mut client = self.pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(backend)?;
            let value = f(&tx).await?;
            tx.commit().await.map_err(backend)?;
            Ok(value)
        })
    }
}

type Params<'a> = &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)];

/// Runs a statement, prepared once per connection.
async fn exec(tx: &Transaction<'_>, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
    let statement = tx.prepare_cached(sql).await.map_err(backend)?;
    tx.execute(&statement, params).await.map_err(backend)
}

/// Runs a query, prepared once per connection, for its rows.
async fn query(
    tx: &Transaction<'_>,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let statement = tx.prepare_cached(sql).await.map_err(backend)?;
    tx.query(&statement, params).await.map_err(backend)
}

/// Runs a query, prepared once per connection, for at most one row.
async fn query_opt(
    tx: &Transaction<'_>,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<tokio_postgres::Row>, StoreError> {
    let statement = tx.prepare_cached(sql).await.map_err(backend)?;
    tx.query_opt(&statement, params).await.map_err(backend)
}

fn uuid(run: RunId) -> uuid::Uuid {
    run.uuid()
}

fn seq(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("sequence number {value}")))
}

fn parse_status(text: &str) -> Result<RunStatus, StoreError> {
    RunStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("run status `{text}`")))
}

/// A run's row as writes see it (see the SQLite store's `Head`).
#[derive(Clone)]
struct Head {
    id: uuid::Uuid,
    status: RunStatus,
    next_seq: u64,
    next_position: i64,
}

impl Head {
    /// The run's head, its row locked until the transaction ends; `UnknownRun` if none.
    async fn load(tx: &Transaction<'_>, run: RunId) -> Result<Self, StoreError> {
        let row = query_opt(
            tx,
            "SELECT status, next_seq, next_position FROM runs WHERE id = $1 FOR UPDATE",
            &[&uuid(run)],
        )
        .await?
        .ok_or(StoreError::UnknownRun(run))?;
        let status: String = row.get(0);
        let next_seq: i64 = row.get(1);
        Ok(Self {
            id: uuid(run),
            status: parse_status(&status)?,
            next_seq: u64::try_from(next_seq)
                .map_err(|_| StoreError::Corrupt(format!("sequence number {next_seq}")))?,
            next_position: row.get(2),
        })
    }

    /// The head of a run that takes writes: `Ended` if it has ended.
    async fn open(tx: &Transaction<'_>, run: RunId) -> Result<Self, StoreError> {
        let head = Self::load(tx, run).await?;
        if head.status.is_final() {
            return Err(StoreError::Ended(run));
        }
        Ok(head)
    }

    async fn insert_events(
        &mut self,
        tx: &Transaction<'_>,
        run: RunId,
        events: &[Event],
    ) -> Result<(), StoreError> {
        super::check_sequence(run, self.next_seq, events)?;
        if events.is_empty() {
            return Ok(());
        }
        let mut seqs = Vec::with_capacity(events.len());
        let mut bodies = Vec::with_capacity(events.len());
        for event in events {
            seqs.push(seq(event.seq)?);
            bodies.push(serde_json::to_value(event).map_err(|e| StoreError::Backend(Box::new(e)))?);
        }
        // One statement for the whole batch.
        exec(
            tx,
            "INSERT INTO events (run_id, seq, body)
             SELECT $1, s, b FROM UNNEST($2::BIGINT[], $3::JSONB[]) AS e (s, b)",
            &[&self.id, &seqs, &bodies],
        )
        .await?;
        self.next_seq += events.len() as u64;
        Ok(())
    }

    /// Records completed nodes after the run's earlier ones, in one statement. A node with
    /// a checkpoint already (or twice in the batch) is `AlreadyCompleted`: the caller's
    /// error rolls the transaction back.
    async fn insert_checkpoints(
        &mut self,
        tx: &Transaction<'_>,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
    ) -> Result<(), StoreError> {
        if checkpoints.is_empty() {
            return Ok(());
        }
        let count = checkpoints.len();
        let mut nodes = Vec::with_capacity(count);
        let mut positions = Vec::with_capacity(count);
        let mut outputs = Vec::with_capacity(count);
        let mut attempts = Vec::with_capacity(count);
        let mut started = Vec::with_capacity(count);
        let mut finished = Vec::with_capacity(count);
        for (i, checkpoint) in checkpoints.into_iter().enumerate() {
            nodes.push(checkpoint.node);
            positions.push(self.next_position + i64::try_from(i).unwrap_or(i64::MAX));
            outputs.push(checkpoint.output);
            attempts.push(i32::try_from(checkpoint.attempts).unwrap_or(i32::MAX));
            started.push(checkpoint.started_at.0);
            finished.push(checkpoint.finished_at.0);
        }
        let inserted = query(
            tx,
            "INSERT INTO checkpoints (run_id, node, position, output, attempts, started_at, finished_at)
             SELECT $1, n, p, o, a, s, f
             FROM UNNEST($2::TEXT[], $3::BIGINT[], $4::JSONB[], $5::INTEGER[], $6::BIGINT[], $7::BIGINT[])
                 AS c (n, p, o, a, s, f)
             ON CONFLICT (run_id, node) DO NOTHING
             RETURNING node",
            &[&self.id, &nodes, &positions, &outputs, &attempts, &started, &finished],
        )
        .await?;
        if inserted.len() < count {
            let mut done: Vec<String> = inserted.iter().map(|row| row.get(0)).collect();
            // The first node of the batch that did not go in: completed before, or twice.
            let refused = nodes
                .into_iter()
                .find(|node| match done.iter().position(|d| d == node) {
                    Some(i) => {
                        done.swap_remove(i);
                        false
                    }
                    None => true,
                })
                .unwrap_or_default();
            return Err(StoreError::AlreadyCompleted { run, node: refused });
        }
        self.next_position += i64::try_from(count).unwrap_or(i64::MAX);
        Ok(())
    }

    async fn replace_state(
        &self,
        tx: &Transaction<'_>,
        state: &StateCheckpoint,
    ) -> Result<(), StoreError> {
        let rounds =
            serde_json::to_value(&state.rounds).map_err(|e| StoreError::Backend(Box::new(e)))?;
        let step = i32::try_from(state.step).unwrap_or(i32::MAX);
        let attempts = i32::try_from(state.attempts).unwrap_or(i32::MAX);
        exec(
            tx,
            "INSERT INTO states
                 (run_id, step, node, state, rounds, next, attempts, started_at, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (run_id) DO UPDATE SET
                 step = EXCLUDED.step, node = EXCLUDED.node, state = EXCLUDED.state,
                 rounds = EXCLUDED.rounds, next = EXCLUDED.next, attempts = EXCLUDED.attempts,
                 started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at",
            &[
                &self.id,
                &step,
                &state.node,
                &state.state,
                &rounds,
                &state.next,
                &attempts,
                &state.started_at.0,
                &state.finished_at.0,
            ],
        )
        .await?;
        if let Some(patch) = &state.change {
            exec(tx,
                "INSERT INTO state_history (run_id, step, node, patch) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (run_id, step) DO UPDATE SET node = EXCLUDED.node, patch = EXCLUDED.patch",
                &[&self.id, &step, &state.node, patch],
            )
            .await?;
        }
        Ok(())
    }

    /// Records completed nodes and their events and moves the head on, the three
    /// statements sent together (tokio-postgres pipelines them on the connection): one
    /// round trip instead of three. The transaction makes them one write.
    async fn record_nodes(
        self,
        tx: &Transaction<'_>,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
        events: &[Event],
    ) -> Result<(), StoreError> {
        super::check_sequence(run, self.next_seq, events)?;
        let mut nodes = self.clone();
        let mut logged = self.clone();
        let after = Head {
            next_seq: self.next_seq + events.len() as u64,
            next_position: self.next_position
                + i64::try_from(checkpoints.len()).unwrap_or(i64::MAX),
            ..self
        };
        tokio::try_join!(
            nodes.insert_checkpoints(tx, run, checkpoints),
            logged.insert_events(tx, run, events),
            after.save(tx),
        )?;
        Ok(())
    }

    /// Writes the head back: status, sequence, position, and `updated_at` (now).
    async fn save(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        exec(
            tx,
            "UPDATE runs SET status = $2, next_seq = $3, next_position = $4, updated_at = $5
             WHERE id = $1",
            &[
                &self.id,
                &self.status.as_str(),
                &seq(self.next_seq)?,
                &self.next_position,
                &Timestamp::now().0,
            ],
        )
        .await?;
        Ok(())
    }
}

const RUN_COLUMNS: &str =
    "id, workflow, graph_hash, input, status, output, error, created_at, updated_at";

fn record(row: &tokio_postgres::Row) -> Result<RunRecord, StoreError> {
    let id: uuid::Uuid = row.get(0);
    let status: String = row.get(4);
    Ok(RunRecord {
        id: RunId::from_uuid(id),
        workflow: row.get(1),
        graph_hash: row.get(2),
        input: row.get(3),
        status: parse_status(&status)?,
        output: row.get(5),
        error: row.get(6),
        created_at: Timestamp(row.get(7)),
        updated_at: Timestamp(row.get(8)),
    })
}

async fn exists(tx: &Transaction<'_>, run: RunId) -> Result<(), StoreError> {
    let found = query_opt(tx, "SELECT 1 FROM runs WHERE id = $1", &[&uuid(run)]).await?;
    found.map(|_| ()).ok_or(StoreError::UnknownRun(run))
}

fn u32_of(value: i32) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("a count of {value}")))
}

/// A cache key's hash as PostgreSQL stores it (a signed 64-bit integer, bit for bit).
#[allow(clippy::cast_possible_wrap)]
fn key_hash(key: &CacheKey) -> i64 {
    key.hash64() as i64
}

impl Store for PostgresStore {
    fn create_run(&self, run: RunRecord) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let inserted = tx
                    .execute(
                        "INSERT INTO runs (id, workflow, graph_hash, input, status, output, error, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT (id) DO NOTHING",
                        &[
                            &uuid(run.id),
                            &run.workflow,
                            &run.graph_hash,
                            &run.input,
                            &run.status.as_str(),
                            &run.output,
                            &run.error,
                            &run.created_at.0,
                            &run.updated_at.0,
                        ],
                    )
                    .await
                    .map_err(|error| {
                        if is_unique_violation(&error) {
                            StoreError::DuplicateRun(run.id)
                        } else {
                            backend(error)
                        }
                    })?;
                if inserted == 0 {
                    return Err(StoreError::DuplicateRun(run.id));
                }
                Ok(())
            })
        })
    }

    fn append_events(&self, run: RunId, events: Vec<Event>) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let mut head = Head::open(tx, run).await?;
                if events.is_empty() {
                    return Ok(());
                }
                head.insert_events(tx, run, &events).await?;
                head.save(tx).await
            })
        })
    }

    fn checkpoint(
        &self,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let head = Head::open(tx, run).await?;
                head.record_nodes(tx, run, checkpoints, &events).await
            })
        })
    }

    fn save_state(
        &self,
        run: RunId,
        state: StateCheckpoint,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let mut head = Head::open(tx, run).await?;
                head.replace_state(tx, &state).await?;
                head.insert_events(tx, run, &events).await?;
                head.save(tx).await
            })
        })
    }

    fn state(&self, run: RunId) -> StoreFuture<'_, Option<StateCheckpoint>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                exists(tx, run).await?;
                let row = query_opt(
                    tx,
                    "SELECT s.step, s.node,
                                CASE WHEN r.status = 'succeeded' THEN COALESCE(r.output, s.state)
                                     ELSE s.state END,
                                s.rounds, s.next, s.attempts, s.started_at, s.finished_at
                         FROM states s JOIN runs r ON r.id = s.run_id WHERE s.run_id = $1",
                    &[&uuid(run)],
                )
                .await?;
                row.map(|row| {
                    let rounds: serde_json::Value = row.get(3);
                    Ok(StateCheckpoint {
                        step: u32_of(row.get(0))?,
                        node: row.get(1),
                        state: row.get(2),
                        rounds: serde_json::from_value(rounds)
                            .map_err(|e| StoreError::Corrupt(format!("loop counters: {e}")))?,
                        next: row.get(4),
                        attempts: u32_of(row.get(5))?,
                        started_at: Timestamp(row.get(6)),
                        finished_at: Timestamp(row.get(7)),
                        change: None,
                    })
                })
                .transpose()
            })
        })
    }

    fn history(&self, run: RunId) -> StoreFuture<'_, Vec<StateChange>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                exists(tx, run).await?;
                let rows = query(
                    tx,
                    "SELECT step, node, patch FROM state_history WHERE run_id = $1 ORDER BY step",
                    &[&uuid(run)],
                )
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(StateChange {
                            step: u32_of(row.get(0))?,
                            node: row.get(1),
                            patch: row.get(2),
                        })
                    })
                    .collect()
            })
        })
    }

    fn suspend(&self, run: RunId, interrupt: Interrupt, events: Vec<Event>) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let mut head = Head::open(tx, run).await?;
                head.insert_events(tx, run, &events).await?;
                exec(
                    tx,
                    "INSERT INTO interrupts (run_id, node, request, created_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (run_id) DO UPDATE SET
                         node = EXCLUDED.node, request = EXCLUDED.request,
                         created_at = EXCLUDED.created_at",
                    &[
                        &head.id,
                        &interrupt.node,
                        &interrupt.request,
                        &interrupt.created_at.0,
                    ],
                )
                .await?;
                head.status = RunStatus::Waiting;
                head.save(tx).await
            })
        })
    }

    fn interrupt(&self, run: RunId) -> StoreFuture<'_, Option<Interrupt>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = query_opt(tx, "SELECT status FROM runs WHERE id = $1", &[&uuid(run)])
                    .await?
                    .ok_or(StoreError::UnknownRun(run))?;
                let status: String = row.get(0);
                if parse_status(&status)? != RunStatus::Waiting {
                    return Ok(None);
                }
                let row = query_opt(
                    tx,
                    "SELECT node, request, created_at FROM interrupts WHERE run_id = $1",
                    &[&uuid(run)],
                )
                .await?;
                Ok(row.map(|row| Interrupt {
                    node: row.get(0),
                    request: row.get(1),
                    created_at: Timestamp(row.get(2)),
                }))
            })
        })
    }

    fn answer(
        &self,
        run: RunId,
        node: String,
        progress: Progress,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let mut head = Head::load(tx, run).await?;
                let waiting: Option<String> = if head.status == RunStatus::Waiting {
                    query_opt(
                        tx,
                        "SELECT node FROM interrupts WHERE run_id = $1",
                        &[&head.id],
                    )
                    .await?
                    .map(|row| row.get(0))
                } else {
                    None
                };
                super::check_answer(run, head.status, waiting.as_deref(), &node)?;
                match progress {
                    Progress::Nodes(checkpoints) => {
                        head.insert_checkpoints(tx, run, checkpoints).await?;
                    }
                    Progress::State(state) => head.replace_state(tx, &state).await?,
                }
                head.insert_events(tx, run, &events).await?;
                exec(tx, "DELETE FROM interrupts WHERE run_id = $1", &[&head.id]).await?;
                head.status = RunStatus::Running;
                head.save(tx).await
            })
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
            Box::pin(async move {
                let mut head = Head::open(tx, run).await?;
                head.insert_events(tx, run, &events).await?;
                if status.is_final() {
                    exec(tx, "DELETE FROM interrupts WHERE run_id = $1", &[&head.id])
                        .await?;
                }
                if status == RunStatus::Succeeded {
                    // The output is the final state: keep it once (`state` reads it back).
                    exec(tx,
                        "UPDATE states SET state = 'null'::JSONB WHERE run_id = $1",
                        &[&head.id],
                    )
                    .await?;
                }
                exec(tx,
                    "UPDATE runs SET status = $2, output = $3, error = $4, next_seq = $5, updated_at = $6
                     WHERE id = $1",
                    &[
                        &head.id,
                        &status.as_str(),
                        &output,
                        &error,
                        &seq(head.next_seq)?,
                        &Timestamp::now().0,
                    ],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn run(&self, run: RunId) -> StoreFuture<'_, RunRecord> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = query_opt(
                    tx,
                    &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
                    &[&uuid(run)],
                )
                .await?
                .ok_or(StoreError::UnknownRun(run))?;
                record(&row)
            })
        })
    }

    fn runs(&self, limit: usize) -> StoreFuture<'_, Vec<RunRecord>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = query(
                    tx,
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id DESC LIMIT $1"
                    ),
                    &[&limit],
                )
                .await?;
                rows.iter().map(record).collect()
            })
        })
    }

    fn count_runs(&self, status: RunStatus) -> StoreFuture<'_, u64> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = query_opt(
                    tx,
                    "SELECT COUNT(*) FROM runs WHERE status = $1",
                    &[&status.as_str()],
                )
                .await?;
                let count: i64 = row.map_or(0, |row| row.get(0));
                Ok(u64::try_from(count).unwrap_or(0))
            })
        })
    }

    fn checkpoints(&self, run: RunId) -> StoreFuture<'_, Vec<Checkpoint>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                exists(tx, run).await?;
                let rows = query(
                    tx,
                    "SELECT node, output, attempts, started_at, finished_at FROM checkpoints
                         WHERE run_id = $1 ORDER BY position",
                    &[&uuid(run)],
                )
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(Checkpoint {
                            node: row.get(0),
                            output: row.get(1),
                            attempts: u32_of(row.get(2))?,
                            started_at: Timestamp(row.get(3)),
                            finished_at: Timestamp(row.get(4)),
                        })
                    })
                    .collect()
            })
        })
    }

    fn events(&self, run: RunId, from: u64) -> StoreFuture<'_, Vec<Event>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                exists(tx, run).await?;
                let from = i64::try_from(from).unwrap_or(i64::MAX);
                let rows = query(
                    tx,
                    "SELECT body FROM events WHERE run_id = $1 AND seq >= $2 ORDER BY seq",
                    &[&uuid(run), &from],
                )
                .await?;
                rows.iter()
                    .map(|row| {
                        serde_json::from_value(row.get(0))
                            .map_err(|e| StoreError::Corrupt(e.to_string()))
                    })
                    .collect()
            })
        })
    }

    fn cached(&self, key: CacheKey, now: Timestamp) -> StoreFuture<'_, Option<serde_json::Value>> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let version = i32::try_from(key.version).unwrap_or(i32::MAX);
                let row = query_opt(
                    tx,
                    "SELECT input, output, expires_at FROM cache
                         WHERE step = $1 AND version = $2 AND hash = $3",
                    &[&key.step, &version, &key_hash(&key)],
                )
                .await?;
                Ok(row.and_then(|row| {
                    let input: String = row.get(0);
                    let expires_at: i64 = row.get(2);
                    (input == key.input && expires_at > now.0).then(|| row.get(1))
                }))
            })
        })
    }

    fn cache(
        &self,
        key: CacheKey,
        output: serde_json::Value,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            Box::pin(async move {
                exec(tx, "DELETE FROM cache WHERE expires_at <= $1", &[&now.0]).await?;
                let version = i32::try_from(key.version).unwrap_or(i32::MAX);
                exec(
                    tx,
                    "INSERT INTO cache (step, version, hash, input, output, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (step, version, hash) DO UPDATE SET
                         input = EXCLUDED.input, output = EXCLUDED.output,
                         expires_at = EXCLUDED.expires_at",
                    &[
                        &key.step,
                        &version,
                        &key_hash(&key),
                        &key.input,
                        &output,
                        &expires_at.0,
                    ],
                )
                .await?;
                Ok(())
            })
        })
    }
}
