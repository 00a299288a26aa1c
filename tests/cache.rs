//! Cached steps: a durable run reuses the output of a `cache`d step whose step, version
//! and inputs match an earlier run's, across runs and across reopening the store; a
//! changed input runs the step.

use std::collections::BTreeMap;
use std::sync::Mutex;

use workflow::prelude::*;
use workflow::store::{MemoryStore, SqliteStore, Store};

/// Counts each step's executions.
#[derive(Default)]
pub struct Calls(Mutex<BTreeMap<&'static str, u32>>);

impl Calls {
    fn ran(&self, step: &'static str) {
        *self.0.lock().unwrap().entry(step).or_default() += 1;
    }

    fn take(&self) -> BTreeMap<&'static str, u32> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn counts<const N: usize>(entries: [(&'static str, u32); N]) -> BTreeMap<&'static str, u32> {
    entries.into_iter().collect()
}

#[step]
#[allow(clippy::ptr_arg)]
fn fetch(ctx: &Calls, topic: &String) -> String {
    ctx.ran("fetch");
    format!("notes on {topic}")
}

/// The expensive call: an LLM summary, cached for a day.
#[step(cache = "1d", version = 3)]
#[allow(clippy::ptr_arg)]
fn summarize(ctx: &Calls, notes: &String, words: u32) -> String {
    ctx.ran("summarize");
    format!("{words} words about {notes}")
}

#[step]
#[allow(clippy::ptr_arg)]
fn title(ctx: &Calls, summary: &String) -> String {
    ctx.ran("title");
    summary.to_uppercase()
}

workflow! {
    /// fetch -> summarize (cached) -> title.
    pub Summary(ctx: Calls, topic: String, words: u32) -> String {
        let notes = fetch(topic);
        let summary = summarize(notes, words);
        title(summary)
    }
}

async fn check_summary_cache(store: impl Store) {
    let durable = Durable::new(Summary::new(Calls::default()), store);
    let calls = &durable.workflow().context();
    let input = || ("rust".to_owned(), 50);

    let first = durable.run(input()).await.expect("first run");
    assert_eq!(first, "50 WORDS ABOUT NOTES ON RUST");
    assert_eq!(
        calls.take(),
        counts([("fetch", 1), ("summarize", 1), ("title", 1)])
    );

    // Same inputs: summarize's output comes from the cache; the uncached steps run.
    let handle = durable.start(input()).await.expect("started");
    let id = handle.id();
    assert_eq!(handle.await.expect("second run"), first);
    assert_eq!(calls.take(), counts([("fetch", 1), ("title", 1)]));
    let events = durable.store().events(id, 0).await.expect("events");
    let of_summary: Vec<String> = events
        .iter()
        .filter(|e| e.kind.node() == Some("summary"))
        .map(|e| name(&e.kind))
        .collect();
    assert_eq!(of_summary, ["cache_hit"], "the step did not start");
    let checkpoints = durable.store().checkpoints(id).await.expect("checkpoints");
    let summary = checkpoints
        .iter()
        .find(|c| c.node == "summary")
        .expect("checkpointed");
    assert_eq!(
        summary.output,
        serde_json::json!("50 words about notes on rust")
    );
    assert_eq!(summary.attempts, 0, "no attempt made");

    // A changed input (either argument) runs the step again.
    let changed = durable
        .run(("rust".to_owned(), 80))
        .await
        .expect("changed words");
    assert_eq!(changed, "80 WORDS ABOUT NOTES ON RUST");
    assert_eq!(
        calls.take(),
        counts([("fetch", 1), ("summarize", 1), ("title", 1)])
    );
    durable
        .run(("go".to_owned(), 50))
        .await
        .expect("changed topic");
    assert_eq!(calls.take()["summarize"], 1);
}

#[tokio::test]
async fn a_cached_step_does_not_run_again_for_the_same_inputs_in_memory() {
    check_summary_cache(MemoryStore::new()).await;
}

#[tokio::test]
async fn a_cached_step_does_not_run_again_for_the_same_inputs_on_sqlite() {
    let dir = tempdir();
    check_summary_cache(SqliteStore::open(dir.join("runs.db")).expect("opened")).await;
    std::fs::remove_dir_all(dir).ok();
}

/// An event's name, as its JSON tags it.
fn name(kind: &workflow::EventKind) -> String {
    serde_json::to_value(kind).expect("serializes")["event"]
        .as_str()
        .expect("tagged")
        .to_owned()
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("workflow-cache-{}", workflow::RunId::new()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
async fn the_cache_outlives_the_process_in_the_sqlite_file() {
    let dir = tempdir();
    let path = dir.join("runs.db");
    let input = || ("rust".to_owned(), 50);
    {
        let durable = Durable::new(
            Summary::new(Calls::default()),
            SqliteStore::open(&path).expect("opened"),
        );
        durable.run(input()).await.expect("first run");
    }
    // A new program: a new workflow value, a new store handle on the same file.
    let durable = Durable::new(
        Summary::new(Calls::default()),
        SqliteStore::open(&path).expect("reopened"),
    );
    durable.run(input()).await.expect("second run");
    assert_eq!(
        durable.workflow().context().take(),
        counts([("fetch", 1), ("title", 1)])
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn plain_runs_do_not_cache() {
    let workflow = Summary::new(Calls::default());
    workflow.run(("rust".to_owned(), 50)).await.expect("run");
    workflow.run(("rust".to_owned(), 50)).await.expect("run");
    assert_eq!(workflow.context().take()["summarize"], 2);
}

workflow! {
    /// The same steps, with caching turned on and off per node.
    pub PerNode(ctx: Calls, topic: String, words: u32) -> String {
        #[node(cache = "10m")]
        let notes = fetch(topic);
        #[node(cache = "off")]
        let summary = summarize(notes, words);
        title(summary)
    }
}

#[tokio::test]
async fn a_node_turns_caching_on_or_off_for_its_step() {
    let durable = Durable::new(PerNode::new(Calls::default()), MemoryStore::new());
    let graph = PerNode::graph();
    assert!(graph.nodes[0].policy.cache.is_some());
    assert_eq!(graph.nodes[1].policy.cache, None);
    assert_eq!(graph.nodes[1].version, 3);
    for _ in 0..2 {
        durable.run(("rust".to_owned(), 50)).await.expect("run");
    }
    assert_eq!(
        durable.workflow().context().take(),
        counts([("fetch", 1), ("summarize", 2), ("title", 2)])
    );
}

#[test]
fn a_step_declares_its_cache_and_version() {
    let policy = <summarize as Step>::POLICY;
    assert_eq!(policy.cache, Some(std::time::Duration::from_secs(86_400)));
    assert_eq!(<summarize as Step>::VERSION, 3);
    assert_eq!(<summarize as Step>::ID, "cache::summarize");
    assert_eq!(<fetch as Step>::VERSION, 1);
    assert_eq!(<fetch as Step>::POLICY.cache, None);
}

/// A review loop over a draft: a cached `polish` node, then a route on the draft's length.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Draft {
    text: String,
    rounds: u32,
}

#[step(cache = "1h")]
fn polish(ctx: &Calls, draft: &mut Draft) {
    ctx.ran("polish");
    draft.text.push('!');
    draft.rounds += 1;
}

#[step]
fn check(ctx: &Calls, draft: &mut Draft) -> bool {
    ctx.ran("check");
    draft.text.len() >= 8
}

workflow! {
    /// polish -> check, looping until the draft is long enough.
    pub Polish(ctx: Calls, state: &mut Draft) {
        polish -> check;
        check => match {
            true => END,
            false => polish,
        } max 10 => END;
    }
}

#[tokio::test]
async fn a_cached_state_graph_node_restores_the_state_after_it() {
    let durable = Durable::new(Polish::new(Calls::default()), MemoryStore::new());
    let draft = Draft {
        text: "hello".to_owned(),
        rounds: 0,
    };
    let first = durable.run(draft.clone()).await.expect("first run");
    assert_eq!(
        first,
        Draft {
            text: "hello!!!".to_owned(),
            rounds: 3
        }
    );
    let calls = durable.workflow().context();
    assert_eq!(calls.take(), counts([("check", 3), ("polish", 3)]));

    // Every polish round meets a state it has seen: all three come from the cache, and the
    // route after each goes the same way.
    let handle = durable.start(draft).await.expect("started");
    let id = handle.id();
    assert_eq!(handle.await.expect("second run"), first);
    assert_eq!(calls.take(), counts([("check", 3)]));
    let events = durable.store().events(id, 0).await.expect("events");
    let hits = events
        .iter()
        .filter(|e| name(&e.kind) == "cache_hit")
        .count();
    assert_eq!(hits, 3);

    // A state it has not seen runs the step.
    let other = Draft {
        text: "hey".to_owned(),
        rounds: 0,
    };
    durable.run(other).await.expect("third run");
    assert_eq!(calls.take()["polish"], 5);
}
