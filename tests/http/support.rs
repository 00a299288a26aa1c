//! What the HTTP tests share: a store, the served workflows, a server on loopback.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use workflow::http::Registry;
use workflow::mock::MockLlm;
use workflow::store::{SqliteStore, Store};

use super::client::{self, Client, SseEvent};
use super::pipeline::{ContentPipeline, Ctx, ReviewedPipeline};

/// A fresh SQLite file for one test.
pub(crate) fn sqlite(name: &str) -> Arc<dyn Store> {
    let dir = std::env::temp_dir().join(format!("workflow-http-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Arc::new(SqliteStore::open(dir.join("runs.db")).unwrap())
}

/// The two content pipelines on `store`, with a mock LLM whose calls take `latency` and
/// whose research fails once (so every run retries once).
pub(crate) fn registry(store: &Arc<dyn Store>, latency: Duration) -> Registry {
    let llm = MockLlm::new()
        .with_latency(latency)
        .fail_when("[research] why it matters", 1);
    let ctx = Arc::new(Ctx::new(llm));
    Registry::with_shared_store(Arc::clone(store))
        .workflow(ContentPipeline::with_context(Arc::clone(&ctx)))
        .workflow(ReviewedPipeline::with_context(ctx))
}

/// Serves `server` on a free loopback port.
pub(crate) async fn start(server: workflow::http::Server) -> Client {
    let listening = server.bind("127.0.0.1:0").await.unwrap();
    let addr = listening.local_addr();
    assert!(addr.ip().is_loopback());
    tokio::spawn(listening.into_future());
    Client::new(addr)
}

pub(crate) async fn serve(store: &Arc<dyn Store>) -> Client {
    serve_with(store, Duration::from_millis(5)).await
}

/// Serves [`registry`] on `store`, its LLM calls taking `latency`, on a free loopback port.
pub(crate) async fn serve_with(store: &Arc<dyn Store>, latency: Duration) -> Client {
    start(workflow::http::serve(registry(store, latency))).await
}

pub(crate) fn topic() -> Value {
    json!({"title": "Typed workflows", "audience": "Rust developers"})
}

/// The events' kinds, in order.
pub(crate) fn kinds(events: &[SseEvent]) -> Vec<String> {
    events.iter().map(|e| e.name.clone()).collect()
}

/// Checks that events are numbered 0, 1, 2, ... and that each SSE id and name match its
/// data.
pub(crate) fn assert_gapless(events: &[SseEvent]) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event.id,
            i as u64,
            "events out of order: {:?}",
            kinds(events)
        );
        assert_eq!(event.data["seq"], event.id);
        assert_eq!(event.data["event"], event.name.as_str());
    }
}

/// The run's events as the store has them, as JSON, once the run has ended (a stream may
/// give the last event a moment before the store has it).
pub(crate) async fn stored_events(store: &Arc<dyn Store>, id: &str) -> Vec<Value> {
    let id = id.parse().unwrap();
    let deadline = std::time::Instant::now() + client::PATIENCE;
    while !store.run(id).await.unwrap().status.is_final() {
        assert!(
            std::time::Instant::now() < deadline,
            "run {id} does not end"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let events = store.events(id, 0).await.unwrap();
    events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

/// How many runs the store has, and how many events in all: what a refused request must
/// leave as it found it.
pub(crate) async fn footprint(store: &Arc<dyn Store>) -> (usize, usize) {
    let runs = store.runs(usize::MAX).await.unwrap();
    let mut events = 0;
    for run in &runs {
        events += store.events(run.id, 0).await.unwrap().len();
    }
    (runs.len(), events)
}

/// The events of a stream up to and with the run's `run_waiting`.
pub(crate) async fn until_waiting(stream: &mut client::Sse) -> Vec<SseEvent> {
    let mut seen = Vec::new();
    while let Some(event) = stream.next().await {
        let waiting = event.name == "run_waiting";
        seen.push(event);
        if waiting {
            return seen;
        }
    }
    panic!("the stream ended without a pause: {seen:?}");
}
