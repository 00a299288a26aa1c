//! The PostgreSQL store: the same semantics as the SQLite one, for processes on several
//! machines sharing one database. Schema versioned in a table of its own.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::{
    CacheKey, Candidate, Checkpoint, Claim, Interrupt, Limit, Progress, RunRecord, RunStatus,
    StateChange, StateCheckpoint, Statement, Store, StoreError, StoreFuture, Task, TaskInputs,
    TaskQueue, TaskResult, Timestamp,
};
use crate::events::Event;
use crate::run::RunId;

/// The schema, one migration per version; a store applies the ones its database lacks.
const MIGRATIONS: &[&str] = &[
    r"
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
",
    r"
    CREATE SEQUENCE task_leases;
    CREATE TABLE tasks (
        run_id UUID NOT NULL REFERENCES runs (id),
        node TEXT NOT NULL,
        workflow TEXT NOT NULL,
        graph_hash TEXT NOT NULL,
        step TEXT NOT NULL,
        ready_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
        lease BIGINT NOT NULL DEFAULT 0,
        owner TEXT,
        expires_at TIMESTAMPTZ,
        claims INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, node)
    );
    CREATE INDEX tasks_by_readiness ON tasks (ready_at);
    CREATE INDEX tasks_by_lease ON tasks (lease);
    CREATE TABLE skipped (
        run_id UUID NOT NULL REFERENCES runs (id),
        node TEXT NOT NULL,
        PRIMARY KEY (run_id, node)
    );
    ALTER TABLE runs ADD COLUMN on_workers BOOLEAN NOT NULL DEFAULT FALSE;
    ALTER TABLE runs ADD COLUMN keeps_history BOOLEAN NOT NULL DEFAULT FALSE;
    CREATE TABLE limits (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        max INTEGER NOT NULL,
        PRIMARY KEY (kind, name)
    );
",
];

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
    /// How to connect, for the connection a worker listens for new tasks on.
    config: tokio_postgres::Config,
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
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(pool_error)?;
        let store = Self { pool, config };
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
            let mut f = Some(f);
            // A pooled connection can have closed since it was last used (the server
            // restarted, or the runtime that drove it is gone): when `BEGIN` finds it
            // closed, nothing was sent, so take another (the pool drops the closed one).
            for _ in 0..=POOL_SIZE {
                let mut client = self.pool.get().await.map_err(pool_error)?;
                let tx = match client.transaction().await {
                    Ok(tx) => tx,
                    Err(error) if error.is_closed() => continue,
                    Err(error) => return Err(backend(error)),
                };
                let Some(f) = f.take() else {
                    break;
                };
                let value = f(&tx).await?;
                tx.commit().await.map_err(backend)?;
                return Ok(value);
            }
            Err(StoreError::Backend(
                "every connection to the database is closed".into(),
            ))
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

/// A JSON value bound to a statement's parameter as the parameter's type asks.
#[derive(Debug)]
struct SqlParam<'a>(&'a serde_json::Value);

impl tokio_postgres::types::ToSql for SqlParam<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use serde_json::Value;
        use tokio_postgres::types::{IsNull, Type};
        let mismatch = || format!("cannot bind {} to a parameter of type {ty}", self.0);
        match (self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (_, &Type::JSON | &Type::JSONB) => self.0.to_sql(ty, out),
            (Value::Bool(b), &Type::BOOL) => b.to_sql(ty, out),
            (Value::Number(n), &Type::INT2) => {
                let n = n.as_i64().and_then(|n| i16::try_from(n).ok());
                n.ok_or_else(mismatch)?.to_sql(ty, out)
            }
            (Value::Number(n), &Type::INT4) => {
                let n = n.as_i64().and_then(|n| i32::try_from(n).ok());
                n.ok_or_else(mismatch)?.to_sql(ty, out)
            }
            (Value::Number(n), &Type::INT8) => n.as_i64().ok_or_else(mismatch)?.to_sql(ty, out),
            #[allow(clippy::cast_possible_truncation)] // a float4 column keeps what fits
            (Value::Number(n), &Type::FLOAT4) => {
                (n.as_f64().ok_or_else(mismatch)? as f32).to_sql(ty, out)
            }
            (Value::Number(n), &Type::FLOAT8) => n.as_f64().ok_or_else(mismatch)?.to_sql(ty, out),
            (Value::String(text), &Type::UUID) => text.parse::<uuid::Uuid>()?.to_sql(ty, out),
            (Value::String(text), _) if <&str>::accepts(ty) => text.as_str().to_sql(ty, out),
            (Value::Number(n), _) if <&str>::accepts(ty) => n.to_string().as_str().to_sql(ty, out),
            _ => Err(mismatch().into()),
        }
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Runs a transactional step's statement in the checkpoint's transaction.
async fn run_statement(
    tx: &Transaction<'_>,
    statement: &Statement,
) -> Result<u64, tokio_postgres::Error> {
    let params: Vec<SqlParam<'_>> = statement.params.iter().map(SqlParam).collect();
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let prepared = tx.prepare_cached(&statement.sql).await?;
    tx.execute(&prepared, &refs).await
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
        let mut writes = Vec::new();
        for (i, checkpoint) in checkpoints.into_iter().enumerate() {
            if !checkpoint.writes.is_empty() {
                writes.push((checkpoint.node.clone(), checkpoint.writes));
            }
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
        for (node, statements) in writes {
            for statement in statements {
                run_statement(tx, &statement)
                    .await
                    .map_err(|error| StoreError::Statement {
                        run,
                        node: node.clone(),
                        sql: statement.sql.clone(),
                        error: error.to_string(),
                    })?;
            }
        }
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

    /// Replaces a state graph's stored state, running its step's statements.
    async fn store_state(
        &self,
        tx: &Transaction<'_>,
        run: RunId,
        state: &StateCheckpoint,
    ) -> Result<(), StoreError> {
        self.replace_state(tx, state).await?;
        for statement in &state.writes {
            run_statement(tx, statement)
                .await
                .map_err(|error| StoreError::Statement {
                    run,
                    node: state.node.clone(),
                    sql: statement.sql.clone(),
                    error: error.to_string(),
                })?;
        }
        Ok(())
    }

    /// Records completed nodes and their events and moves the head on, the three
    /// statements sent together (tokio-postgres pipelines them on the connection): one
    /// round trip instead of three. The transaction makes them one write. Returns the
    /// head as it is then.
    async fn record_nodes(
        self,
        tx: &Transaction<'_>,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
        events: &[Event],
    ) -> Result<Head, StoreError> {
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
        Ok(after)
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

/// A checkpoint from its row: node, output, attempts, started, finished.
fn checkpoint_of(row: &tokio_postgres::Row) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        node: row.get(0),
        output: row.get(1),
        attempts: u32_of(row.get(2))?,
        started_at: Timestamp(row.get(3)),
        finished_at: Timestamp(row.get(4)),
        writes: Vec::new(),
    })
}

fn u32_of(value: i32) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("a count of {value}")))
}

/// A cache key's hash as PostgreSQL stores it (a signed 64-bit integer, bit for bit).
#[allow(clippy::cast_possible_wrap)]
fn key_hash(key: &CacheKey) -> i64 {
    key.hash64() as i64
}

/// Inserts a new run's row.
async fn insert_run(tx: &Transaction<'_>, run: &RunRecord) -> Result<(), StoreError> {
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
}

/// Records an answer to a run's pause (see [`Store::answer`]): the run back to running,
/// the pause node's progress and the answer's events.
async fn record_answer(
    tx: &Transaction<'_>,
    head: &mut Head,
    run: RunId,
    (node, progress): (&str, Progress),
    events: &[Event],
) -> Result<(), StoreError> {
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
    super::check_answer(run, head.status, waiting.as_deref(), node)?;
    match progress {
        Progress::Nodes(checkpoints) => {
            head.insert_checkpoints(tx, run, checkpoints).await?;
        }
        Progress::State(state) => head.replace_state(tx, &state).await?,
    }
    head.insert_events(tx, run, events).await?;
    exec(tx, "DELETE FROM interrupts WHERE run_id = $1", &[&head.id]).await?;
    head.status = RunStatus::Running;
    Ok(())
}

impl Store for PostgresStore {
    fn create_run(&self, run: RunRecord) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| Box::pin(async move { insert_run(tx, &run).await }))
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
                head.record_nodes(tx, run, checkpoints, &events).await?;
                Ok(())
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
                head.store_state(tx, run, &state).await?;
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
                        writes: Vec::new(),
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
                record_answer(tx, &mut head, run, (&node, progress), &events).await?;
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
                let head = Head::open(tx, run).await?;
                end_run(tx, head, run, (status, output, error), &events).await
            })
        })
    }

    fn finish_run_after(
        &self,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
        mut events: Vec<Event>,
        checkpointed: usize,
        status: RunStatus,
        output: Option<serde_json::Value>,
        error: Option<String>,
    ) -> StoreFuture<'_, ()> {
        // One transaction, so one commit (one wait for the server's disk) less.
        self.transaction(move |tx| {
            Box::pin(async move {
                let rest = events.split_off(checkpointed.min(events.len()));
                let head = Head::open(tx, run).await?;
                let head = head.record_nodes(tx, run, checkpoints, &events).await?;
                end_run(tx, head, run, (status, output, error), &rest).await
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
                rows.iter().map(checkpoint_of).collect()
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

    fn queue(&self) -> Option<&dyn TaskQueue> {
        Some(self)
    }

    fn runs_statements(&self) -> bool {
        true
    }
}

/// Gives `events` the sequence numbers that follow the run's stored log.
fn renumber(head: &Head, mut events: Vec<Event>) -> Vec<Event> {
    for (i, event) in events.iter_mut().enumerate() {
        event.seq = head.next_seq + i as u64;
    }
    events
}

fn millis(lease: std::time::Duration) -> f64 {
    lease.as_secs_f64() * 1000.0
}

/// Queues the tasks of one run that are ready. With `notify`, idle workers listening hear
/// of them when the transaction commits: for a new run's first tasks. The tasks a worker's
/// result makes ready need no signal (that worker claims again at once, the others poll),
/// and a `NOTIFY` serializes the commits that send one.
async fn enqueue(
    tx: &Transaction<'_>,
    run: uuid::Uuid,
    tasks: &[Task],
    notify: bool,
) -> Result<(), StoreError> {
    if tasks.is_empty() {
        return Ok(());
    }
    let nodes: Vec<&str> = tasks.iter().map(|t| t.node.as_str()).collect();
    let steps: Vec<&str> = tasks.iter().map(|t| t.step.as_str()).collect();
    exec(
        tx,
        "INSERT INTO tasks (run_id, node, workflow, graph_hash, step)
         SELECT r.id, t.n, r.workflow, r.graph_hash, t.s
         FROM runs r, UNNEST($2::TEXT[], $3::TEXT[]) AS t (n, s) WHERE r.id = $1
         ON CONFLICT (run_id, node) DO NOTHING",
        &[&run, &nodes, &steps],
    )
    .await?;
    if notify {
        exec(tx, "SELECT pg_notify('workflow_tasks', '')", &[]).await?;
    }
    Ok(())
}

/// Listens for new tasks on a connection of its own and wakes `wake` for each
/// notification, until `wake` is dropped; reconnects after a second when the connection
/// fails (meanwhile the worker's polling finds the tasks).
async fn listen(config: tokio_postgres::Config, wake: std::sync::Weak<tokio::sync::Notify>) {
    use futures_util::StreamExt as _;
    while wake.strong_count() > 0 {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                let subscribe = client.batch_execute("LISTEN workflow_tasks");
                tokio::pin!(subscribe);
                let mut subscribed = false;
                loop {
                    tokio::select! {
                        result = &mut subscribe, if !subscribed => {
                            if result.is_err() {
                                break;
                            }
                            subscribed = true;
                        }
                        message = messages.next() => match message {
                            Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                                match wake.upgrade() {
                                    Some(wake) => wake.notify_one(),
                                    None => return,
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => break,
                        },
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                            if wake.strong_count() == 0 {
                                return;
                            }
                        }
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "cannot listen for new tasks"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The candidates whose inputs all exist now: every node they need has a checkpoint, every
/// node they read if present has one or was skipped, and they were not skipped themselves.
async fn ready_candidates(
    tx: &Transaction<'_>,
    run: uuid::Uuid,
    candidates: Vec<Candidate>,
) -> Result<Vec<Task>, StoreError> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mut names: Vec<&str> = Vec::new();
    for candidate in &candidates {
        names.push(&candidate.task.node);
        names.extend(candidate.needs.iter().map(String::as_str));
        names.extend(candidate.reads_if_present.iter().map(String::as_str));
    }
    let rows = query(
        tx,
        "SELECT node, FALSE FROM checkpoints WHERE run_id = $1 AND node = ANY($2)
         UNION ALL
         SELECT node, TRUE FROM skipped WHERE run_id = $1 AND node = ANY($2)",
        &[&run, &names],
    )
    .await?;
    let mut done = std::collections::HashSet::new();
    let mut skipped = std::collections::HashSet::new();
    for row in &rows {
        let node: String = row.get(0);
        if row.get::<_, bool>(1) {
            skipped.insert(node);
        } else {
            done.insert(node);
        }
    }
    Ok(candidates
        .into_iter()
        .filter(|c| {
            !skipped.contains(&c.task.node)
                && !done.contains(&c.task.node)
                && c.needs.iter().all(|n| done.contains(n))
                && c.reads_if_present
                    .iter()
                    .all(|n| done.contains(n) || skipped.contains(n))
        })
        .map(|c| c.task)
        .collect())
}

/// The time since a run was created, for an event the store writes itself.
async fn run_age(tx: &Transaction<'_>, run: uuid::Uuid) -> Result<std::time::Duration, StoreError> {
    let row = query_opt(tx, "SELECT created_at FROM runs WHERE id = $1", &[&run]).await?;
    let created: i64 = row.map_or(0, |row| row.get(0));
    let micros = Timestamp::now().0.saturating_sub(created);
    Ok(std::time::Duration::from_micros(
        u64::try_from(micros).unwrap_or(0),
    ))
}

/// How many more tasks each concurrency limit lets start: `(kind, name)` -> room. The
/// limits are counted under their rows' locks, so claimers of limited work take turns and
/// two of them never both take the last slot.
async fn room_left(
    tx: &Transaction<'_>,
) -> Result<std::collections::HashMap<(String, String), i64>, StoreError> {
    let limits = query(
        tx,
        "SELECT kind, name, max FROM limits ORDER BY kind, name FOR UPDATE",
        &[],
    )
    .await?;
    let mut room: std::collections::HashMap<(String, String), i64> = limits
        .iter()
        .map(|row| ((row.get(0), row.get(1)), i64::from(row.get::<_, i32>(2))))
        .collect();
    if !room.is_empty() {
        let busy = query(
            tx,
            "SELECT step, workflow FROM tasks WHERE expires_at > clock_timestamp()",
            &[],
        )
        .await?;
        for row in &busy {
            for key in [("step", row.get::<_, String>(0)), ("workflow", row.get(1))] {
                if let Some(left) = room.get_mut(&(key.0.to_owned(), key.1)) {
                    *left -= 1;
                }
            }
        }
    }
    Ok(room)
}

/// Chooses up to `max` ready tasks, oldest first, within the room the concurrency limits
/// leave (see [`room_left`]); locks them (`FOR UPDATE SKIP LOCKED`).
async fn choose(
    tx: &Transaction<'_>,
    (names, hashes): (&[&str], &[&str]),
    running: &[i64],
    max: usize,
    mut room: std::collections::HashMap<(String, String), i64>,
) -> Result<(Vec<uuid::Uuid>, Vec<String>), StoreError> {
    let full = |kind: &str| -> Vec<String> {
        room.iter()
            .filter(|((k, _), left)| k == kind && **left <= 0)
            .map(|((_, name), _)| name.clone())
            .collect()
    };
    let (full_steps, full_workflows) = (full("step"), full("workflow"));
    let limit = i64::try_from(max.saturating_mul(2)).unwrap_or(i64::MAX);
    let rows = query(
        tx,
        "SELECT t.run_id, t.node, t.step, t.workflow FROM tasks t
         JOIN UNNEST($1::TEXT[], $2::TEXT[]) AS w (name, hash)
             ON t.workflow = w.name AND t.graph_hash = w.hash
         WHERE (t.expires_at IS NULL OR t.expires_at < clock_timestamp())
             AND t.step <> ALL($3) AND t.workflow <> ALL($4)
             AND t.lease <> ALL($6)
         ORDER BY t.ready_at
         LIMIT $5
         FOR UPDATE OF t SKIP LOCKED",
        &[
            &names,
            &hashes,
            &full_steps,
            &full_workflows,
            &limit,
            &running,
        ],
    )
    .await?;
    let mut runs = Vec::new();
    let mut nodes = Vec::new();
    for row in &rows {
        if runs.len() == max {
            break;
        }
        let step: String = row.get(2);
        let workflow: String = row.get(3);
        let keys = [("step".to_owned(), step), ("workflow".to_owned(), workflow)];
        if keys
            .iter()
            .any(|key| room.get(key).is_some_and(|&left| left <= 0))
        {
            continue;
        }
        for key in &keys {
            if let Some(left) = room.get_mut(key) {
                *left -= 1;
            }
        }
        runs.push(row.get::<_, uuid::Uuid>(0));
        nodes.push(row.get::<_, String>(1));
    }
    Ok((runs, nodes))
}

/// Takes the chosen tasks under new leases.
async fn take(
    tx: &Transaction<'_>,
    (runs, nodes): (Vec<uuid::Uuid>, Vec<String>),
    owner: &str,
    lease: std::time::Duration,
) -> Result<Vec<Claim>, StoreError> {
    let claimed = query(
        tx,
        "UPDATE tasks t SET lease = nextval('task_leases'), owner = $3,
             expires_at = clock_timestamp() + $4 * INTERVAL '1 millisecond',
             claims = t.claims + 1
         FROM UNNEST($1::UUID[], $2::TEXT[]) AS c (run_id, node)
         WHERE t.run_id = c.run_id AND t.node = c.node
         RETURNING t.run_id, t.node, t.workflow, t.lease, t.claims,
             EXTRACT(EPOCH FROM clock_timestamp() - t.ready_at)::FLOAT8",
        &[&runs, &nodes, &owner, &millis(lease)],
    )
    .await?;
    claimed.iter().map(claim_of).collect()
}

/// A claim from its row: run, node, workflow, lease, claims, seconds waited.
fn claim_of(row: &tokio_postgres::Row) -> Result<Claim, StoreError> {
    let lease: i64 = row.get(3);
    let waited: f64 = row.get(5);
    Ok(Claim {
        run: RunId::from_uuid(row.get(0)),
        node: row.get(1),
        workflow: row.get(2),
        lease: u64::try_from(lease).map_err(|_| StoreError::Corrupt(format!("lease {lease}")))?,
        claims: u32_of(row.get(4))?,
        waited: std::time::Duration::from_secs_f64(waited.max(0.0)),
    })
}

/// Records how a run ended, with its last events: a run that has ended keeps no pause and
/// no queued work (its tasks are dropped, whoever ended it: a worker's last task, a
/// cancellation), and a succeeded state graph keeps its final state once, as its output.
async fn end_run(
    tx: &Transaction<'_>,
    mut head: Head,
    run: RunId,
    (status, output, error): (RunStatus, Option<serde_json::Value>, Option<String>),
    events: &[Event],
) -> Result<(), StoreError> {
    head.insert_events(tx, run, events).await?;
    if status.is_final() {
        exec(tx, "DELETE FROM interrupts WHERE run_id = $1", &[&head.id]).await?;
        exec(tx, "DELETE FROM tasks WHERE run_id = $1", &[&head.id]).await?;
    }
    if status == RunStatus::Succeeded {
        // `state` reads the final state back from the output.
        exec(
            tx,
            "UPDATE states SET state = 'null'::JSONB WHERE run_id = $1",
            &[&head.id],
        )
        .await?;
    }
    exec(
        tx,
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
}

/// After a task of a run was recorded: when nothing of the run is queued or in flight, it
/// waits at its pause, or every node has completed or was skipped and the task that
/// computes its output is queued.
async fn after_task(tx: &Transaction<'_>, head: &mut Head, run: RunId) -> Result<(), StoreError> {
    let left = query_opt(
        tx,
        "SELECT 1 FROM tasks WHERE run_id = $1 LIMIT 1",
        &[&head.id],
    )
    .await?;
    if left.is_some() {
        return Ok(());
    }
    let waiting = query_opt(
        tx,
        "SELECT node FROM interrupts WHERE run_id = $1",
        &[&head.id],
    )
    .await?;
    if let Some(row) = waiting {
        let at = run_age(tx, head.id).await?;
        let event = Event {
            seq: head.next_seq,
            at,
            kind: crate::events::EventKind::RunWaiting {
                node: row.get::<_, String>(0).into(),
                duration: at,
            },
        };
        head.insert_events(tx, run, &[event]).await?;
        head.status = RunStatus::Waiting;
        return Ok(());
    }
    let finish = Task {
        node: super::FINISH.to_owned(),
        step: String::new(),
    };
    enqueue(tx, head.id, &[finish], false).await
}

impl TaskQueue for PostgresStore {
    fn submit(
        &self,
        run: RunRecord,
        ready: Vec<Task>,
        events: Vec<Event>,
        history: bool,
    ) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let id = run.id;
                insert_run(tx, &run).await?;
                exec(
                    tx,
                    "UPDATE runs SET on_workers = TRUE, keeps_history = $2 WHERE id = $1",
                    &[&uuid(id), &history],
                )
                .await?;
                let mut head = Head::open(tx, id).await?;
                head.insert_events(tx, id, &renumber(&head, events)).await?;
                head.save(tx).await?;
                enqueue(tx, uuid(id), &ready, true).await
            })
        })
    }

    fn claim<'a>(
        &'a self,
        workflows: &'a [(String, String)],
        (owner, running): (&'a str, &'a [u64]),
        max: usize,
        lease: std::time::Duration,
    ) -> StoreFuture<'a, Vec<Claim>> {
        // The transaction's future borrows nothing of the caller's.
        let (workflows, owner) = (workflows.to_vec(), owner.to_owned());
        let running: Vec<i64> = running
            .iter()
            .filter_map(|&l| i64::try_from(l).ok())
            .collect();
        self.transaction(move |tx| {
            Box::pin(async move {
                let owner = owner.as_str();
                if max == 0 || workflows.is_empty() {
                    return Ok(Vec::new());
                }
                let names: Vec<&str> = workflows.iter().map(|(n, _)| n.as_str()).collect();
                let hashes: Vec<&str> = workflows.iter().map(|(_, h)| h.as_str()).collect();
                // A claim that is lost in a crash only leaves its tasks unclaimed: its commit
                // need not wait for the disk.
                let relaxed = async {
                    tx.batch_execute("SET LOCAL synchronous_commit = off")
                        .await
                        .map_err(backend)
                };
                let ((), room) = tokio::try_join!(relaxed, room_left(tx))?;
                if room.is_empty() {
                    // No limits: choosing and taking are one statement.
                    let limit = i64::try_from(max).unwrap_or(i64::MAX);
                    let rows = query(
                        tx,
                        "WITH picked AS (
                             SELECT t.run_id, t.node FROM tasks t
                             JOIN UNNEST($1::TEXT[], $2::TEXT[]) AS w (name, hash)
                                 ON t.workflow = w.name AND t.graph_hash = w.hash
                             WHERE (t.expires_at IS NULL OR t.expires_at < clock_timestamp())
                                 AND t.lease <> ALL($3)
                             ORDER BY t.ready_at
                             LIMIT $4
                             FOR UPDATE OF t SKIP LOCKED)
                         UPDATE tasks t SET lease = nextval('task_leases'), owner = $5,
                             expires_at = clock_timestamp() + $6 * INTERVAL '1 millisecond',
                             claims = t.claims + 1
                         FROM picked WHERE t.run_id = picked.run_id AND t.node = picked.node
                         RETURNING t.run_id, t.node, t.workflow, t.lease, t.claims,
                             EXTRACT(EPOCH FROM clock_timestamp() - t.ready_at)::FLOAT8",
                        &[&names, &hashes, &running, &limit, &owner, &millis(lease)],
                    )
                    .await?;
                    return rows.iter().map(claim_of).collect();
                }
                let chosen = choose(tx, (&names, &hashes), &running, max, room).await?;
                if chosen.0.is_empty() {
                    return Ok(Vec::new());
                }
                take(tx, chosen, owner, lease).await
            })
        })
    }

    fn renew<'a>(
        &'a self,
        leases: &'a [u64],
        lease: std::time::Duration,
    ) -> StoreFuture<'a, Vec<u64>> {
        let leases = leases.to_vec();
        self.transaction(move |tx| {
            Box::pin(async move {
                if leases.is_empty() {
                    return Ok(Vec::new());
                }
                let held: Vec<i64> = leases
                    .iter()
                    .filter_map(|&l| i64::try_from(l).ok())
                    .collect();
                // A renewal lost in a crash changes nothing: nobody holds the tasks then.
                tx.batch_execute("SET LOCAL synchronous_commit = off")
                    .await
                    .map_err(backend)?;
                let rows = query(
                    tx,
                    "UPDATE tasks SET expires_at = clock_timestamp() + $2 * INTERVAL '1 millisecond'
                     WHERE lease = ANY($1) AND expires_at > clock_timestamp()
                     RETURNING lease",
                    &[&held, &millis(lease)],
                )
                .await?;
                Ok(rows
                    .iter()
                    .filter_map(|row| u64::try_from(row.get::<_, i64>(0)).ok())
                    .collect())
            })
        })
    }

    fn inputs(&self, run: RunId, nodes: Option<Vec<String>>) -> StoreFuture<'_, TaskInputs> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let id = uuid(run);
                let record = async {
                    let row = query_opt(
                        tx,
                        &format!("SELECT {RUN_COLUMNS}, keeps_history FROM runs WHERE id = $1"),
                        &[&id],
                    )
                    .await?
                    .ok_or(StoreError::UnknownRun(run))?;
                    Ok::<_, StoreError>((record(&row)?, row.get::<_, bool>(9)))
                };
                // Sent together with the run's row: one round trip.
                let checkpoints = async {
                    query(
                        tx,
                        "SELECT node, output, attempts, started_at, finished_at FROM checkpoints
                         WHERE run_id = $1 AND ($2::TEXT[] IS NULL OR node = ANY($2))
                         ORDER BY position",
                        &[&id, &nodes],
                    )
                    .await
                };
                let ((record, history), rows) = tokio::try_join!(record, checkpoints)?;
                let checkpoints = rows.iter().map(checkpoint_of).collect::<Result<_, _>>()?;
                Ok(TaskInputs {
                    record,
                    checkpoints,
                    history,
                })
            })
        })
    }

    fn complete<'a>(&'a self, claim: &'a Claim, result: TaskResult) -> StoreFuture<'a, ()> {
        let claim = claim.clone();
        self.transaction(move |tx| {
            Box::pin(async move {
                let claim = &claim;
                let run = claim.run;
                let mut head = Head::load(tx, run).await?;
                let lease = i64::try_from(claim.lease).unwrap_or(i64::MAX);
                // The fence: the task must still be held under this claim's lease. (A lease
                // that has expired but that nobody took over is still good.)
                let removed = exec(
                    tx,
                    "DELETE FROM tasks WHERE run_id = $1 AND node = $2 AND lease = $3",
                    &[&head.id, &claim.node, &lease],
                )
                .await?;
                if removed == 0 {
                    return Err(StoreError::LeaseLost {
                        run,
                        node: claim.node.clone(),
                    });
                }
                if head.status.is_final() {
                    return Err(StoreError::Ended(run));
                }
                let TaskResult {
                    checkpoint,
                    state,
                    skipped,
                    pause,
                    candidates,
                    end,
                    events,
                } = result;
                let events = renumber(&head, events);
                if let Some(state) = &state {
                    head.store_state(tx, run, state).await?;
                }
                if let Some(end) = end {
                    return end_run(tx, head, run, end, &events).await;
                }
                if let Some(checkpoint) = checkpoint {
                    head.insert_checkpoints(tx, run, vec![checkpoint]).await?;
                }
                if !skipped.is_empty() {
                    exec(
                        tx,
                        "INSERT INTO skipped (run_id, node) SELECT $1, n FROM UNNEST($2::TEXT[]) AS s (n)
                         ON CONFLICT DO NOTHING",
                        &[&head.id, &skipped],
                    )
                    .await?;
                }
                head.insert_events(tx, run, &events).await?;
                if let Some(pause) = pause {
                    // The first pause is the one answered first; a later one asks again
                    // after it.
                    exec(
                        tx,
                        "INSERT INTO interrupts (run_id, node, request, created_at)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (run_id) DO NOTHING",
                        &[&head.id, &pause.node, &pause.request, &pause.created_at.0],
                    )
                    .await?;
                }
                let ready = ready_candidates(tx, head.id, candidates).await?;
                enqueue(tx, head.id, &ready, false).await?;
                after_task(tx, &mut head, run).await?;
                head.save(tx).await
            })
        })
    }

    fn set_limits(&self, limits: Vec<Limit>) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            Box::pin(async move {
                // Workers starting together write the same limits: one at a time. A limit
                // that stays is updated in place, never deleted and inserted again: a
                // claimer that waits for its row's lock then still sees it.
                exec(tx, "SELECT pg_advisory_xact_lock(7720420)", &[]).await?;
                let (mut kinds, mut names, mut maxes) = (Vec::new(), Vec::new(), Vec::new());
                for limit in &limits {
                    let (kind, name, max) = limit.parts();
                    kinds.push(kind);
                    names.push(name);
                    maxes.push(i32::try_from(max).unwrap_or(i32::MAX));
                }
                exec(
                    tx,
                    "DELETE FROM limits l WHERE NOT EXISTS (
                         SELECT 1 FROM UNNEST($1::TEXT[], $2::TEXT[]) AS n (kind, name)
                         WHERE n.kind = l.kind AND n.name = l.name)",
                    &[&kinds, &names],
                )
                .await?;
                exec(
                    tx,
                    "INSERT INTO limits (kind, name, max)
                     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::INTEGER[])
                     ON CONFLICT (kind, name) DO UPDATE SET max = EXCLUDED.max",
                    &[&kinds, &names, &maxes],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn on_workers(&self, run: RunId) -> StoreFuture<'_, bool> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = query_opt(
                    tx,
                    "SELECT on_workers FROM runs WHERE id = $1",
                    &[&uuid(run)],
                )
                .await?
                .ok_or(StoreError::UnknownRun(run))?;
                Ok(row.get(0))
            })
        })
    }

    fn answer_queued(
        &self,
        run: RunId,
        (node, progress): (String, Progress),
        events: Vec<Event>,
        next: Vec<Candidate>,
    ) -> StoreFuture<'_, ()> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let mut head = Head::load(tx, run).await?;
                record_answer(tx, &mut head, run, (&node, progress), &events).await?;
                let ready = ready_candidates(tx, head.id, next).await?;
                // Idle workers hear of the run going on.
                enqueue(tx, head.id, &ready, true).await?;
                after_task(tx, &mut head, run).await?;
                head.save(tx).await
            })
        })
    }

    fn queued(&self, run: RunId) -> StoreFuture<'_, u64> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = query_opt(
                    tx,
                    "SELECT COUNT(*) FROM tasks WHERE run_id = $1",
                    &[&uuid(run)],
                )
                .await?;
                let count: i64 = row.map_or(0, |row| row.get(0));
                Ok(u64::try_from(count).unwrap_or(0))
            })
        })
    }

    fn wakeups(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        tokio::spawn(listen(
            self.config.clone(),
            std::sync::Arc::downgrade(&wake),
        ));
        Some(wake)
    }

    fn pending(&self) -> StoreFuture<'_, u64> {
        self.transaction(move |tx| {
            Box::pin(async move {
                let row = query_opt(tx, "SELECT COUNT(*) FROM tasks", &[]).await?;
                let count: i64 = row.map_or(0, |row| row.get(0));
                Ok(u64::try_from(count).unwrap_or(0))
            })
        })
    }
}
