//! Worker processes on one PostgreSQL: 1, 2 and 4 workers (this program, run again as child
//! processes) share the runs of the content pipeline (8 nodes; its mock LLM answers at
//! once, so what is measured is the cost of coordination).
//!
//! For each pool size, in a schema of its own:
//! - **throughput**: `WORKER_RUNS` runs (500 by default) are submitted, then the workers
//!   start (16 nodes at once each); node steps per second from their start to the last
//!   run's end; once with LLM calls that answer at once (coordination alone), once with
//!   LLM calls of 50 ms (steps that wait on the outside, as real ones do);
//! - **latency**: with the workers idle, runs are submitted one every 20 ms; for every task
//!   the time from its becoming ready (its inputs committed) to a worker claiming it, by
//!   the database's clock: median and 99th percentile. A run's first nodes wait for a
//!   worker's next look at the queue (every 20 ms here); the nodes after them are claimed
//!   as soon as the worker that made them ready is done.
//!
//! Beside them, the same runs in one process: durable on PostgreSQL, on SQLite, and in
//! memory (all 500 started at once).
//!
//! `cargo bench --bench workers` (release). Needs PostgreSQL: `WORKFLOW_PG_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`.

// Counts of runs and steps are far below 2^52.
#![allow(clippy::cast_precision_loss)]

#[path = "../examples/content_pipeline/pipeline.rs"]
#[allow(dead_code)]
mod pipeline;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::{ContentPipeline, Ctx, Topic};
use workflow::mock::MockLlm;
use workflow::prelude::*;
use workflow::store::{MemoryStore, PostgresStore, RunStatus, SqliteStore, Store};
use workflow::worker::Worker;

/// Node steps per run of the content pipeline.
const STEPS: usize = 8;
/// How often an idle worker looks at the queue.
const POLL_MS: u64 = 20;

fn url() -> String {
    std::env::var("WORKFLOW_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn ctx() -> Arc<Ctx> {
    ctx_with(Duration::ZERO)
}

/// A context whose mock LLM calls take `latency`.
fn ctx_with(latency: Duration) -> Arc<Ctx> {
    Arc::new(Ctx::new(MockLlm::new().with_latency(latency)))
}

fn topic(i: usize) -> Topic {
    Topic {
        title: format!("Rust for data teams #{i}"),
        audience: "engineers".to_owned(),
    }
}

/// A child process: a worker in `schema` until SIGTERM (its LLM calls taking
/// `WORKFLOW_BENCH_LATENCY_MS`); then its waits, in µs, on stdout.
async fn work(schema: &str) {
    let latency = std::env::var("WORKFLOW_BENCH_LATENCY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::ZERO, Duration::from_millis);
    let store = PostgresStore::connect_in_schema(&url(), schema)
        .await
        .expect("connected");
    let worker = Worker::new(store)
        .workflow(ContentPipeline::with_context(ctx_with(latency)))
        .concurrency(16)
        .poll_every(Duration::from_millis(POLL_MS));
    let stats = worker.stats();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    worker
        .run_until(async move { term.recv().await })
        .await
        .expect("the worker ran");
    let waits: Vec<String> = stats
        .get()
        .waits
        .iter()
        .map(|w| w.as_micros().to_string())
        .collect();
    println!("{}", waits.join(" "));
}

struct Pool(Vec<Child>);

impl Pool {
    fn start(schema: &str, workers: usize, latency: Duration) -> Self {
        let exe = std::env::current_exe().expect("this program");
        Self(
            (0..workers)
                .map(|_| {
                    Command::new(&exe)
                        .env("WORKFLOW_BENCH_WORKER", schema)
                        .env("WORKFLOW_BENCH_LATENCY_MS", latency.as_millis().to_string())
                        .stdout(Stdio::piped())
                        .spawn()
                        .expect("a worker process")
                })
                .collect(),
        )
    }

    /// Stops the workers; returns every wait they measured.
    fn stop(self) -> Vec<Duration> {
        let mut waits = Vec::new();
        for child in self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let output = child.wait_with_output().expect("the worker ends");
            let text = String::from_utf8_lossy(&output.stdout);
            waits.extend(
                text.split_whitespace()
                    .filter_map(|us| us.parse().ok())
                    .map(Duration::from_micros),
            );
        }
        waits
    }
}

/// A fresh schema `name`: dropped if a run before left it, then made by the store.
async fn schema(name: &str) -> PostgresStore {
    drop_schema(name).await;
    PostgresStore::connect_in_schema(&url(), name)
        .await
        .expect("connected")
}

async fn drop_schema(name: &str) {
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL: set WORKFLOW_PG_URL");
    let task = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        .await
        .expect("dropped");
    drop(client);
    let _ = task.await;
}

async fn until_succeeded(store: &PostgresStore, runs: u64) {
    while store
        .count_runs(RunStatus::Succeeded)
        .await
        .expect("counted")
        < runs
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Node steps per second with `workers` processes draining `runs` submitted runs, their
/// LLM calls taking `latency`.
async fn throughput(workers: usize, runs: usize, latency: Duration) -> f64 {
    let name = format!("bench_workers_{workers}_throughput");
    let store = schema(&name).await;
    let durable = Durable::new(ContentPipeline::with_context(ctx()), store.clone());
    for i in 0..runs {
        durable.submit(topic(i)).await.expect("submitted");
    }
    let started = Instant::now();
    let pool = Pool::start(&name, workers, latency);
    until_succeeded(&store, runs as u64).await;
    let elapsed = started.elapsed();
    pool.stop();
    drop_schema(&name).await;
    (runs * STEPS) as f64 / elapsed.as_secs_f64()
}

/// Ready-to-claimed times with `workers` idle processes and runs arriving every 20 ms.
async fn latency(workers: usize, runs: usize) -> Vec<Duration> {
    let name = format!("bench_workers_{workers}_latency");
    let store = schema(&name).await;
    let pool = Pool::start(&name, workers, Duration::ZERO);
    // Let the workers connect before the first run arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let durable = Durable::new(ContentPipeline::with_context(ctx()), store.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..runs {
        tick.tick().await;
        durable.submit(topic(i)).await.expect("submitted");
    }
    until_succeeded(&store, runs as u64).await;
    let waits = pool.stop();
    drop_schema(&name).await;
    waits
}

/// Node steps per second of `runs` runs started at once in this process.
async fn one_process(store: Arc<dyn Store>, runs: usize) -> f64 {
    let durable = Durable::with_shared_store(ContentPipeline::with_context(ctx()), store);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(runs);
    for i in 0..runs {
        handles.push(durable.start(topic(i)).await.expect("started"));
    }
    for handle in handles {
        handle.await.expect("the run succeeds");
    }
    (runs * STEPS) as f64 / started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[allow(clippy::cast_precision_loss)]
fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if let Ok(schema) = std::env::var("WORKFLOW_BENCH_WORKER") {
        runtime.block_on(work(&schema));
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then a quick look.
    let quick = !std::env::args().any(|arg| arg == "--bench");
    let runs: usize = std::env::var("WORKER_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 20 } else { 500 });
    let paced = if quick { 10 } else { 100 };
    runtime.block_on(async {
        println!("content pipeline, {runs} runs of {STEPS} node steps; latency: {paced} runs, one every 20 ms");
        println!();
        println!(
            "| workers | node steps/s | vs 1 worker | with 50 ms LLM calls | vs 1 worker | ready -> claimed, median | p99 |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        let (mut first, mut first_slow) = (None, None);
        for workers in [1, 2, 4] {
            let rate = throughput(workers, runs, Duration::ZERO).await;
            let base = *first.get_or_insert(rate);
            let slow = throughput(workers, runs, Duration::from_millis(50)).await;
            let slow_base = *first_slow.get_or_insert(slow);
            let mut waits = latency(workers, paced).await;
            waits.sort();
            println!(
                "| {workers} | {rate:.0} | {:.2}x | {slow:.0} | {:.2}x | {:.1} ms | {:.1} ms |",
                rate / base,
                slow / slow_base,
                ms(percentile(&waits, 0.5)),
                ms(percentile(&waits, 0.99)),
            );
        }
        println!();
        println!("the same runs in one process:");
        println!();
        println!("| store | node steps/s |");
        println!("| --- | ---: |");
        let name = "bench_workers_one_process";
        let pg = schema(name).await;
        let rate = one_process(Arc::new(pg), runs).await;
        drop_schema(name).await;
        println!("| PostgreSQL | {rate:.0} |");
        let dir = std::env::temp_dir().join(format!("workflow-bench-workers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let sqlite = SqliteStore::open(dir.join("runs.db")).expect("SQLite");
        let rate = one_process(Arc::new(sqlite), runs).await;
        let _ = std::fs::remove_dir_all(&dir);
        println!("| SQLite | {rate:.0} |");
        let rate = one_process(Arc::new(MemoryStore::new()), runs).await;
        println!("| memory | {rate:.0} |");
    });
}
