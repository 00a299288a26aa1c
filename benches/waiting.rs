//! Many runs waiting for a person at once: `WAITING_RUNS` (100,000 by default) small durable
//! runs each reach a human-in-the-loop pause and wait, all at the same time; then every one
//! is answered and runs to its end.
//!
//! Reported per store (in memory, then a SQLite file, each in a process of its own): the
//! resident memory each further waiting run costs (the growth of the process's resident set
//! over the second half of the runs, divided by their number), how fast runs reach their
//! pause, and how fast answered runs resume and finish.
//! A waiting run holds no task and no future: what it costs is what its store keeps, so on
//! SQLite it costs the process nothing (the store's page cache is bounded).
//!
//! `cargo bench --bench waiting` (release); `WAITING_RUNS=10000 cargo bench --bench waiting`
//! for a quicker look. Linux only (reads `/proc/self/statm`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use workflow::prelude::*;
use workflow::store::{MemoryStore, SqliteStore, Store};

/// Drafts a post.
#[step]
#[allow(clippy::ptr_arg)]
fn draft(topic: &String) -> String {
    format!("A post about {topic}")
}

/// Asks an editor to approve it.
#[step]
#[allow(clippy::ptr_arg)]
fn approval(post: &String) -> Pause<String, bool> {
    Pause::new(post.clone())
}

/// Publishes it, if approved.
#[step]
#[allow(clippy::ptr_arg, clippy::trivially_copy_pass_by_ref)]
fn publish(post: &String, approved: &bool) -> String {
    if *approved {
        format!("published: {post}")
    } else {
        "dropped".to_owned()
    }
}

workflow! {
    /// Drafts, waits for an editor, publishes.
    pub Blog(topic: String) -> String {
        let post = draft(topic);
        let approved = approval(post);
        publish(post, approved)
    }
}

/// How many runs are in flight at once while they start and while they resume.
const BATCH: usize = 1_000;

/// The process's resident set, in bytes.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

struct Figures {
    bytes_per_waiting_run: f64,
    to_pause: Duration,
    to_end: Duration,
}

async fn measure(store: Arc<dyn Store>, runs: usize) -> Figures {
    let durable = Durable::with_shared_store(Blog::new(), store);
    // A first run warms up what every run shares (the graph's hash, statement caches).
    wait_and_answer(&durable, &[0]).await;
    // The first half warms up what grows with concurrency, not with waiting runs (the
    // blocking pool's threads, the allocator's arenas); the second half's growth is what
    // each further waiting run costs.
    let half = runs / 2;
    let started = Instant::now();
    let mut ids = Vec::with_capacity(runs);
    let mut before = 0;
    for (n, chunk) in (0..runs).collect::<Vec<_>>().chunks(BATCH).enumerate() {
        if n * BATCH >= half && before == 0 {
            before = resident();
        }
        let waiting = join_all(chunk.iter().map(|&i| start_until_paused(&durable, i))).await;
        ids.extend(waiting);
    }
    let to_pause = started.elapsed();
    let after = resident();
    let resumed = Instant::now();
    for chunk in ids.chunks(BATCH) {
        join_all(chunk.iter().map(|&id| answer(&durable, id))).await;
    }
    let to_end = resumed.elapsed();
    #[allow(clippy::cast_precision_loss)]
    let bytes_per_waiting_run = after.saturating_sub(before) as f64 / (runs - half) as f64;
    Figures {
        bytes_per_waiting_run,
        to_pause,
        to_end,
    }
}

async fn start_until_paused(durable: &Durable<Blog>, i: usize) -> workflow::RunId {
    let handle = durable.start(format!("topic {i}")).await.expect("started");
    let id = handle.id();
    match handle.await {
        Err(RunError::Waiting { .. }) => id,
        other => panic!("run {id} should wait, got {other:?}"),
    }
}

async fn answer(durable: &Durable<Blog>, id: workflow::RunId) {
    let handle = durable
        .answer::<approval>(id, true)
        .await
        .expect("answered");
    let published = handle.await.expect("finished");
    assert!(published.starts_with("published"));
}

async fn wait_and_answer(durable: &Durable<Blog>, topics: &[usize]) {
    for &i in topics {
        let id = start_until_paused(durable, i).await;
        answer(durable, id).await;
    }
}

fn report(store: &str, runs: usize, figures: &Figures) {
    #[allow(clippy::cast_precision_loss)]
    let rate = |d: Duration| runs as f64 / d.as_secs_f64();
    println!(
        "{store:<8} {runs:>7} runs | {:>8.0} B resident per waiting run | {:>8.0} runs/s to their pause | {:>8.0} runs/s answered to their end",
        figures.bytes_per_waiting_run,
        rate(figures.to_pause),
        rate(figures.to_end),
    );
}

fn main() {
    let runs: usize = std::env::var("WAITING_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    // Each store is measured in a process of its own, so that memory one scenario freed
    // (and the allocator kept) does not hide what the other one uses.
    let Ok(store) = std::env::var("WAITING_STORE") else {
        for store in ["memory", "sqlite"] {
            let status = std::process::Command::new(std::env::current_exe().expect("this program"))
                .env("WAITING_STORE", store)
                .env("WAITING_RUNS", runs.to_string())
                .status()
                .expect("a child process");
            assert!(status.success(), "the {store} scenario failed");
        }
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = std::env::temp_dir().join(format!("workflow-waiting-{}", std::process::id()));
    let figures = if store == "sqlite" {
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let sqlite = SqliteStore::open(dir.join("runs.db")).expect("a SQLite file");
        runtime.block_on(measure(Arc::new(sqlite), runs))
    } else {
        runtime.block_on(measure(Arc::new(MemoryStore::new()), runs))
    };
    report(&store, runs, &figures);
    std::fs::remove_dir_all(dir).ok();
}
