//! Under load: 1,000 runs started through the API at once, 50 of them followed by SSE
//! clients from their start. Bounded in count and time, loopback only. A test binary of its
//! own, so that the heap it counts is the server's and its clients' alone.

#[path = "../http/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "../../examples/content_pipeline/pipeline.rs"]
#[allow(dead_code)]
mod pipeline;
#[path = "../http/support.rs"]
#[allow(dead_code)]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use client::{Client, SseEvent};
use futures_util::StreamExt as _;
use serde_json::Value;
use support::{registry, sqlite, start, stored_events, topic};
use workflow::store::{RunStatus, Store};

const RUNS: usize = 1_000;
const FOLLOWED: usize = 50;

/// The process's resident memory, in bytes (Linux).
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The bytes allocated and not yet freed by the whole process (the server, its runs, the
/// store and the test's clients), counted by the global allocator: what the process holds,
/// whatever the allocator keeps of what was freed.
fn heap() -> i64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

// ---- Counting the heap in use, for the load test. ----

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated and not yet freed, process-wide.
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

/// The system allocator, keeping count of the bytes in use.
struct Counting;

// A global allocator can only be written as an `unsafe impl`, and `unsafe_code` is denied
// workspace-wide. Every method counts, then passes its arguments unchanged to `System`, so
// the caller's guarantees are exactly what `System` requires.
#[allow(unsafe_code, clippy::cast_possible_wrap)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

async fn start_run(client: &Client) -> String {
    let reply = client
        .post("/workflows/ContentPipeline/runs", topic().to_string())
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    reply.json()["id"].as_str().unwrap().to_owned()
}

/// Starts `RUNS` runs at once, `FOLLOWED` of them with an SSE client attached from their
/// start; checks that every run succeeds and that every client received every event of its
/// run once and in order. Returns how long it took, how many events the runs stored and how
/// many the clients received.
async fn round(client: &Client, store: &Arc<dyn Store>) -> (Duration, usize, usize) {
    let began = Instant::now();
    // The followed runs first, each with its SSE client attached as soon as it started.
    let mut followers = Vec::new();
    for _ in 0..FOLLOWED {
        let id = start_run(client).await;
        let stream = client.events(&format!("/runs/{id}/events"), None).await;
        followers.push((id, tokio::spawn(stream.collect())));
    }
    // The rest, all at once.
    let mut ids: Vec<String> = futures_util::stream::iter(0..RUNS - FOLLOWED)
        .map(|_| {
            let client = client.clone();
            async move { start_run(&client).await }
        })
        .buffer_unordered(RUNS)
        .collect()
        .await;
    assert_eq!(ids.len(), RUNS - FOLLOWED);

    // Every run completes.
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in ids.iter().chain(followers.iter().map(|(id, _)| id)) {
        let id = id.parse().unwrap();
        loop {
            let status = store.run(id).await.unwrap().status;
            if status.is_final() {
                assert_eq!(status, RunStatus::Succeeded, "run {id}");
                break;
            }
            assert!(Instant::now() < deadline, "run {id} did not finish in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let elapsed = began.elapsed();

    // Every client saw every event of its run, once, in order.
    let mut received = 0;
    for (id, follower) in followers {
        let seen: Vec<SseEvent> = follower.await.unwrap();
        let stored = stored_events(store, &id).await;
        let data: Vec<Value> = seen.iter().map(|e| e.data.clone()).collect();
        assert_eq!(data, stored, "run {id}: the stream differs from the store");
        assert!(seen.iter().enumerate().all(|(i, e)| e.id == i as u64));
        assert_eq!(seen.last().unwrap().name, "run_finished");
        received += seen.len();
        ids.push(id);
    }
    let mut stored = 0;
    for id in &ids {
        stored += store.events(id.parse().unwrap(), 0).await.unwrap().len();
    }
    (elapsed, stored, received)
}

// Counts far below 2^52 print as exact floats.
#[allow(clippy::cast_precision_loss)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_runs_with_fifty_live_clients() {
    let store = sqlite("load");
    let client = start(workflow::http::serve(registry(
        &store,
        Duration::from_millis(2),
    )))
    .await;
    let warm = start_run(&client).await;
    client
        .events(&format!("/runs/{warm}/events"), None)
        .await
        .collect()
        .await;

    let (elapsed, stored, received) = round(&client, &store).await;
    let mib = |bytes: f64| bytes / f64::from(1 << 20);
    let first = heap();
    eprintln!(
        "{RUNS} runs in {:.2} s: {:.0} runs/s, {:.0} events stored/s; {FOLLOWED} SSE clients \
         received {received} events ({:.0}/s); heap in use after the round {:.1} MiB, \
         resident {:.1} MiB",
        elapsed.as_secs_f64(),
        RUNS as f64 / elapsed.as_secs_f64(),
        stored as f64 / elapsed.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64(),
        mib(first as f64),
        mib(resident() as f64),
    );
    // Two more rounds as large: the server keeps nothing of a finished run in memory, so
    // what it holds does not grow with the runs it has served.
    for _ in 0..2 {
        round(&client, &store).await;
    }
    let last = heap();
    eprintln!(
        "after two more rounds: heap in use {:.1} MiB, resident {:.1} MiB",
        mib(last as f64),
        mib(resident() as f64)
    );
    assert!(
        last - first < 4 << 20,
        "the heap grew by {} bytes over 2,000 more runs",
        last - first
    );
}
