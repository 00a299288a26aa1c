//! The durable path's cost: the `overhead` benchmark's graphs run plain (`workflow.run`,
//! nothing stored), and durably (`Durable::run`, every completed node checkpointed) on the
//! in-memory store and on SQLite, in one benchmark run so that the figures compare.
//!
//! Shapes (the `overhead` benchmark's, from `generated/graphs.rs`; see `overhead.rs`):
//! - `fanout_1000`: one root, 1000 no-op leaves reading it, joined by a tree of `sum10`
//!   steps: 1112 steps, one run per iteration. Leaves that complete while the store writes
//!   go into the next checkpoint's transaction together, so this is the batched case;
//! - `chain_100`: 100 no-op steps in a row, one run per iteration: one checkpoint
//!   transaction per step, the unbatched case;
//! - `pipeline_x200`: the content pipeline's shape (8 no-op steps), 200 runs back to back
//!   per iteration: many small runs, where recording and finishing each run counts.
//!
//! Variants, per shape (group `durable/<shape>`, throughput in steps, so criterion reports
//! the time per step and steps per second):
//! - `plain`: `workflow.run(input)`, the baseline;
//! - `memory`: `Durable::new(workflow, MemoryStore::new())`, then `durable.run(input)`; a
//!   fresh store per criterion sample, so the stored runs do not pile up in memory;
//! - `sqlite`: the same on `SqliteStore::open` (WAL, `synchronous = NORMAL`), one file per
//!   shape in a temporary directory, fresh when the benchmark starts and kept for all its
//!   samples: runs accumulate in it, as they do in a real store (its size is printed at the
//!   end). The directory is removed afterwards;
//! - `postgres`: the same on `PostgresStore` when `WORKFLOW_PG_URL` names a server, in a
//!   schema of its own (dropped afterwards); runs accumulate as on SQLite.
//!
//! Every variant runs on a multi-thread tokio runtime with 2 workers, its runs awaited back
//! to back from one task on a worker, as in `overhead.rs`. A durable run is spawned in a
//! task of its own (`Durable::start`); a plain run is driven by the awaiting task.
//!
//! 20 samples, 1 s of warm-up and 5 s of measurement per variant unless the command line
//! says otherwise: the whole benchmark takes about a minute (`cargo bench --bench
//! durable`).
#![allow(
    // Of the shapes in `generated/graphs.rs` this benchmark measures three; of the steps in
    // `common/shapes.rs`, those.
    dead_code,
    // Step inputs are taken by reference, as `generated/graphs.rs`'s hand-written code
    // calls them.
    clippy::trivially_copy_pass_by_ref,
    // `sum10` joins ten inputs: that is the point of it.
    clippy::too_many_arguments
)]

use std::future::{Future, ready};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Bencher, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use futures_util::future::{Map, Shared};
use tokio::runtime::Runtime;
use tokio::task::{JoinError, JoinHandle};
use workflow::prelude::*;
use workflow::store::{MemoryStore, PostgresStore, SqliteStore, Store};

include!("common/shapes.rs");
include!("generated/graphs.rs");

// ---- Measurements. ----

/// Awaits `runs` runs of `run(target)` back to back, `iters` times, inside one task spawned
/// on the runtime, and times that loop from inside the task (as `overhead.rs` does).
/// `fresh` makes the target once per criterion sample, outside the timed loop.
fn measure<T, F, Fut>(b: &mut Bencher<'_>, rt: &Runtime, runs: u32, fresh: impl Fn() -> T, run: F)
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = u64> + Send,
{
    b.to_async(rt).iter_custom(|iters| {
        let target = Arc::new(fresh());
        async move {
            tokio::spawn(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    for _ in 0..runs {
                        black_box(run(Arc::clone(&target)).await);
                    }
                }
                start.elapsed()
            })
            .await
            .expect("the measuring task panicked")
        }
    });
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The bytes of an SQLite file and its write-ahead log.
fn sqlite_size(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_owned(), PathBuf::from(wal)]
        .iter()
        .filter_map(|file| std::fs::metadata(file).ok())
        .map(|metadata| metadata.len())
        .sum()
}

/// One group per shape: its three variants, checked to agree with each other and with the
/// hand-written programs (and the durable ones to store one checkpoint per step) before
/// they are measured.
macro_rules! shape {
    (
        $c:expr, $rt:expr, $dir:expr, $pg:expr, $group:literal, $ty:ident, $steps:expr,
        $runs:expr, $spawn:ident, $single:ident
    ) => {{
        let pg: &Option<Arc<dyn Store>> = $pg;
        let rt: &Runtime = $rt;
        let steps: usize = $steps;
        let runs: u32 = $runs;
        let path = $dir.join(concat!($group, ".db"));
        let sqlite: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&path).expect("the SQLite store opens"));
        let plain = |workflow: Arc<$ty>| async move {
            workflow.run(black_box(1)).await.expect("the run succeeds")
        };
        let durable = |durable: Arc<Durable<$ty>>| async move {
            durable.run(black_box(1)).await.expect("the run succeeds")
        };
        let on_memory = || Durable::new($ty::new(), MemoryStore::new());
        let on_sqlite = || Durable::with_shared_store($ty::new(), Arc::clone(&sqlite));
        let on_postgres = || {
            let store = pg.as_ref().expect("a PostgreSQL store");
            Durable::with_shared_store($ty::new(), Arc::clone(store))
        };
        let checked = {
            let mut durables = vec![on_memory(), on_sqlite()];
            if pg.is_some() {
                durables.push(on_postgres());
            }
            rt.block_on(async move {
                tokio::spawn(async move {
                    let mut outputs = vec![
                        $spawn(1).await,
                        $single(1).await,
                        plain(Arc::new($ty::new())).await,
                    ];
                    for durable in durables {
                        let handle = durable.start(1).await.expect("the run starts");
                        let id = handle.id();
                        outputs.push(handle.await.expect("the run succeeds"));
                        let stored = durable.store().checkpoints(id).await.expect("stored");
                        assert_eq!(stored.len(), steps, "{}: one checkpoint per step", $group);
                    }
                    outputs
                })
                .await
                .expect("the runs succeed")
            })
        };
        assert!(
            checked.iter().all(|&output| output == checked[0]),
            "{}: the variants disagree: {checked:?}",
            $group
        );
        let mut group = $c.benchmark_group(concat!("durable/", $group));
        group.throughput(Throughput::Elements(steps as u64 * u64::from(runs)));
        group.bench_function("plain", |b| measure(b, rt, runs, $ty::new, plain));
        group.bench_function("memory", |b| measure(b, rt, runs, on_memory, durable));
        group.bench_function("sqlite", |b| measure(b, rt, runs, on_sqlite, durable));
        if pg.is_some() {
            group.bench_function("postgres", |b| measure(b, rt, runs, on_postgres, durable));
        }
        group.finish();
        drop(sqlite);
        eprintln!(
            "{}: the SQLite store ended with {} bytes (file and WAL)",
            $group,
            sqlite_size(&path)
        );
    }};
}

fn durable(c: &mut Criterion) {
    let rt = runtime();
    let dir = std::env::temp_dir().join(format!("workflow-bench-durable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let pg_url = std::env::var("WORKFLOW_PG_URL").ok();
    let schema = format!("bench_durable_{}", std::process::id());
    let pg: Option<Arc<dyn Store>> = pg_url.as_ref().map(|url| {
        let store = rt
            .block_on(PostgresStore::connect_in_schema(url, &schema))
            .expect("the PostgreSQL store connects");
        Arc::new(store) as Arc<dyn Store>
    });
    if pg.is_none() {
        eprintln!("WORKFLOW_PG_URL is not set: no PostgreSQL figures");
    }
    shape!(
        c,
        &rt,
        dir,
        &pg,
        "fanout_1000",
        Fanout1000,
        1112,
        1,
        fanout_1000_tokio_spawn,
        fanout_1000_tokio_single_task
    );
    shape!(
        c,
        &rt,
        dir,
        &pg,
        "chain_100",
        Chain100,
        100,
        1,
        chain_100_tokio_spawn,
        chain_100_tokio_single_task
    );
    shape!(
        c,
        &rt,
        dir,
        &pg,
        "pipeline_x200",
        Pipeline,
        8,
        200,
        pipeline_tokio_spawn,
        pipeline_tokio_single_task
    );
    drop(pg);
    if let Some(url) = pg_url {
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connected");
            let task = tokio::spawn(connection);
            client
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await
                .expect("the benchmark's schema is dropped");
            drop(client);
            let _ = task.await;
        });
    }
    drop(rt);
    std::fs::remove_dir_all(&dir).expect("the temporary directory is removed");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = durable
}
criterion_main!(benches);
