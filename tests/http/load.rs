//! Under load: 1,000 runs started through the API at once, 50 of them followed by SSE
//! clients from their start. Bounded in count and time, loopback only.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::Value;

use super::client::{Client, SseEvent};
use super::{registry, sqlite, start, stored_events, topic};

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

async fn start_run(client: &Client) -> String {
    let reply = client
        .post("/workflows/ContentPipeline/runs", topic().to_string())
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    reply.json()["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_runs_with_fifty_live_clients() {
    let store = sqlite("load");
    let client = start(workflow::http::serve(registry(
        &store,
        Duration::from_millis(2),
    )))
    .await;
    // Warm up (the allocator, SQLite's caches), then measure from here.
    let warm = start_run(&client).await;
    client
        .events(&format!("/runs/{warm}/events"), None)
        .await
        .collect()
        .await;
    let memory_before = resident();
    let began = Instant::now();

    // The followed runs first, each with its SSE client attached as soon as it started.
    let mut followers = Vec::new();
    for _ in 0..FOLLOWED {
        let id = start_run(&client).await;
        let stream = client.events(&format!("/runs/{id}/events"), None).await;
        followers.push((id, tokio::spawn(stream.collect())));
    }
    // The rest, all at once.
    let ids: Vec<String> = futures_util::stream::iter(0..RUNS - FOLLOWED)
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
    loop {
        let runs = client
            .get(&format!("/runs?limit={}", RUNS + 1))
            .await
            .json();
        let runs = runs["runs"].as_array().unwrap().clone();
        let done = runs.iter().filter(|r| r["status"] == "succeeded").count();
        let failed: Vec<&Value> = runs
            .iter()
            .filter(|r| r["status"] != "succeeded" && r["status"] != "running")
            .collect();
        assert!(failed.is_empty(), "runs did not succeed: {failed:?}");
        if done == RUNS + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {} runs finished",
            RUNS + 1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = began.elapsed();

    // Every client saw every event of its run, once, in order.
    let mut events = 0;
    for (id, follower) in followers {
        let seen: Vec<SseEvent> = follower.await.unwrap();
        let stored = stored_events(&store, &id).await;
        let data: Vec<Value> = seen.iter().map(|e| e.data.clone()).collect();
        assert_eq!(data, stored, "run {id}: the stream differs from the store");
        assert!(seen.iter().enumerate().all(|(i, e)| e.id == i as u64));
        assert_eq!(seen.last().unwrap().name, "run_finished");
        events += seen.len();
    }
    let stored_total: usize = {
        let mut total = 0;
        for id in &ids {
            total += store.events(id.parse().unwrap(), 0).await.unwrap().len();
        }
        total
    };

    let memory_after = resident();
    let grown = memory_after.saturating_sub(memory_before);
    eprintln!(
        "{RUNS} runs in {:.2} s: {:.0} runs/s, {:.0} stored events/s; {FOLLOWED} SSE clients \
         received {events} events; resident memory grew by {:.1} MiB",
        elapsed.as_secs_f64(),
        RUNS as f64 / elapsed.as_secs_f64(),
        (stored_total + events) as f64 / elapsed.as_secs_f64(),
        grown as f64 / f64::from(1 << 20),
    );
    // Finished runs are not kept in memory: the growth is the allocator's and SQLite's
    // caches, far below a copy of every run.
    assert!(grown < 256 << 20, "resident memory grew by {grown} bytes");
}
