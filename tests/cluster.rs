//! Worker processes sharing PostgreSQL: the content pipeline example's `worker` command, run
//! as real child processes. Three of them share 200 submitted runs, each node executed
//! exactly once; a worker killed with SIGKILL mid-step has its nodes taken over by another
//! once its leases expire, and only the nodes it had in flight run again. Skipped with a
//! notice without `WORKFLOW_PG_URL`.

#[path = "support/pg.rs"]
mod pg;
#[path = "../examples/content_pipeline/pipeline.rs"]
#[allow(dead_code)]
mod pipeline;

#[path = "support/example.rs"]
mod example;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use pipeline::{ContentPipeline, Ctx, Topic};
use workflow::RunId;
use workflow::mock::MockLlm;
use workflow::prelude::*;
use workflow::store::{PostgresStore, RunStatus, Store, TaskQueue as _};

/// A test's schema, and where its worker processes keep their journal.
struct Cluster {
    schema: pg::PgSchema,
    dir: PathBuf,
}

impl Cluster {
    fn new(test: &str) -> Option<Self> {
        let schema = pg::PgSchema::new(test)?;
        let dir = std::env::temp_dir().join(format!("workflow-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Some(Self { schema, dir })
    }

    /// Starts a worker process.
    fn worker(&self, name: &str, extra: &[&str]) -> Child {
        Command::new(example::example())
            .args([
                "--db",
                &self.schema.url_in_schema(),
                "worker",
                "--name",
                name,
                "--stats",
            ])
            .args(["--poll-ms", "20", "--journal"])
            .arg(self.dir.join("journal"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the worker starts")
    }

    /// Each line of the journal: `<run>/<node>`.
    fn journal(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("journal"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split(' ').nth(1).map(str::to_owned))
            .collect()
    }

    async fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        self.schema.remove().await;
    }
}

/// Stops a worker with SIGTERM; returns the figures it printed.
fn stop(worker: Child) -> serde_json::Value {
    let status = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let output = worker.wait_with_output().expect("the worker ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the worker failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("figures: {stderr}"))
}

fn topic(i: usize) -> Topic {
    Topic {
        title: format!("Rust for data teams #{i}"),
        audience: "engineers".to_owned(),
    }
}

/// Submits `count` runs of the content pipeline.
async fn submit(store: &PostgresStore, count: usize) -> Vec<RunId> {
    let ctx = Arc::new(Ctx::new(MockLlm::new()));
    let durable = Durable::new(ContentPipeline::with_context(ctx), store.clone());
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        ids.push(durable.submit(topic(i)).await.expect("submitted"));
    }
    ids
}

/// Waits until every run has ended.
async fn ended(store: &PostgresStore, ids: &[RunId], within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    for &id in ids {
        while !store.run(id).await.unwrap().status.is_final() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {id} did not end"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Checks that every run succeeded with the output a run in one process gives, and that
/// its stored log is gapless, from `run_started` to `run_finished`.
async fn check_outputs(store: &PostgresStore, ids: &[RunId]) {
    let local = ContentPipeline::with_context(Arc::new(Ctx::new(MockLlm::new())));
    for (i, &id) in ids.iter().enumerate() {
        let record = store.run(id).await.unwrap();
        assert_eq!(record.status, RunStatus::Succeeded, "run {i}: {record:?}");
        let expected = local.run(topic(i)).await.expect("a local run");
        assert_eq!(
            record.output,
            Some(serde_json::to_value(&expected).unwrap())
        );
        let events = store.events(id, 0).await.unwrap();
        for (seq, event) in events.iter().enumerate() {
            assert_eq!(event.seq, seq as u64, "run {i}'s log has a gap");
        }
        assert!(matches!(
            events.first().map(|e| &e.kind),
            Some(workflow::EventKind::RunStarted { .. })
        ));
        assert!(matches!(
            events.last().map(|e| &e.kind),
            Some(workflow::EventKind::RunFinished { .. })
        ));
    }
}

fn counts(journal: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for key in journal {
        *counts.entry(key.clone()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_share_200_runs_and_run_each_node_once() {
    let Some(cluster) = Cluster::new("three_worker_processes_share_200_runs") else {
        return;
    };
    let store = cluster.schema.store().await;
    let ids = submit(&store, 200).await;
    let workers: Vec<Child> = ["w1", "w2", "w3"]
        .into_iter()
        .map(|name| cluster.worker(name, &["--latency", "5", "--concurrency", "8"]))
        .collect();
    ended(&store, &ids, Duration::from_secs(240)).await;
    let figures: Vec<serde_json::Value> = workers.into_iter().map(stop).collect();

    check_outputs(&store, &ids).await;
    let journal = cluster.journal();
    let counts = counts(&journal);
    assert_eq!(counts.len(), 200 * 8, "every node of every run ran");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "nodes that ran more than once: {twice:?}");
    // 8 nodes and the run's end per run, shared by the three workers.
    let completed: u64 = figures
        .iter()
        .map(|f| f["completed"].as_u64().unwrap())
        .sum();
    assert_eq!(completed, 200 * 9);
    for f in &figures {
        assert!(
            f["completed"].as_u64().unwrap() > 0,
            "every worker took a share: {f}"
        );
        assert_eq!(
            (f["lost"].as_u64(), f["taken_over"].as_u64()),
            (Some(0), Some(0))
        );
    }
    assert_eq!(store.pending().await.unwrap(), 0);
    cluster.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_its_nodes_to_another_after_its_leases_expire() {
    let Some(cluster) = Cluster::new("a_killed_worker_loses_its_nodes") else {
        return;
    };
    let store = cluster.schema.store().await;
    let ids = submit(&store, 12).await;
    let slow = [
        "--latency",
        "300",
        "--lease-ms",
        "1500",
        "--concurrency",
        "6",
    ];
    let mut doomed = cluster.worker("doomed", &slow);
    // Kill it while it has steps in flight.
    while cluster.journal().len() < 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    doomed.kill().expect("SIGKILL");
    let _ = doomed.wait();
    let started_before = cluster.journal();
    let mut completed_before = BTreeSet::new();
    for &id in &ids {
        for checkpoint in store.checkpoints(id).await.unwrap() {
            completed_before.insert(format!("{id}/{}", checkpoint.node));
        }
    }
    let in_flight: BTreeSet<String> = started_before
        .iter()
        .filter(|key| !completed_before.contains(*key))
        .cloned()
        .collect();
    assert!(!in_flight.is_empty(), "the worker was killed mid-step");

    let heir = cluster.worker("heir", &["--latency", "5", "--lease-ms", "1500"]);
    ended(&store, &ids, Duration::from_secs(120)).await;
    let figures = stop(heir);

    check_outputs(&store, &ids).await;
    let counts = counts(&cluster.journal());
    assert_eq!(counts.len(), 12 * 8, "every node of every run ran");
    for (key, n) in &counts {
        let expected = usize::from(in_flight.contains(key)) + 1;
        assert_eq!(
            *n,
            expected,
            "{key}: completed before the kill: {}, in flight: {}",
            completed_before.contains(key),
            in_flight.contains(key)
        );
    }
    // The nodes in flight on the killed worker were taken over once their leases expired
    // (and any it had claimed but not yet started).
    let taken_over = figures["taken_over"].as_u64().unwrap();
    assert!(taken_over >= in_flight.len() as u64, "{figures}");
    assert_eq!(store.pending().await.unwrap(), 0);
    cluster.remove().await;
}
