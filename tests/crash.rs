//! Crash safety with a real process and a real kill: the content pipeline example runs in a
//! child process against a SQLite file, is killed with SIGKILL while steps are in flight
//! (or while a checkpoint is being written), and is restarted with `--resume`.
//!
//! Asserted each time: the output equals an uninterrupted run's; no node whose checkpoint
//! was stored ran again (the steps note each execution in a journal file); the stored event
//! log is gapless and every started step later succeeded or was started again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use workflow::store::{RunStatus, SqliteStore, Store};
use workflow::{EventKind, RunId};

/// The example binary: `cargo test` builds the examples next to the test binaries.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = dir.join("examples").join("content_pipeline");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test`, which builds the examples",
        path.display()
    );
    path
}

struct Scenario {
    dir: PathBuf,
}

impl Scenario {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("workflow-crash-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(example());
        command
            .args(["--latency", "40", "--json", "--db"])
            .arg(self.dir.join("runs.db"))
            .arg("--journal")
            .arg(self.dir.join("journal"))
            .args(extra);
        command
    }

    /// Runs the pipeline, killing it when the progress shows `node` starting (or, with
    /// `--kill-during-checkpoint`, letting it kill itself). Returns the run id.
    fn run_and_kill(&self, kill_at: Option<&str>, extra: &[&str]) -> RunId {
        let mut child = self
            .command(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut id = None;
        for line in stderr.lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("run ") {
                id = rest.split_whitespace().next().and_then(|s| s.parse().ok());
            }
            if let Some(node) = kill_at
                && line.ends_with(&format!("> {node}"))
            {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child was killed: {status:?}");
        id.expect("the child printed its run id")
    }

    fn resume(&self, id: RunId) -> serde_json::Value {
        let output = self
            .command(&["--resume", &id.to_string()])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(output.status.success(), "the resumed run succeeds");
        serde_json::from_slice(&output.stdout).expect("the output as JSON")
    }

    fn journal(&self) -> BTreeMap<String, usize> {
        let text = std::fs::read_to_string(self.dir.join("journal")).unwrap_or_default();
        let mut counts = BTreeMap::new();
        for node in text.lines() {
            *counts.entry(node.to_owned()).or_insert(0) += 1;
        }
        counts
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(self.dir.join("runs.db")).unwrap()
    }
}

fn uninterrupted() -> serde_json::Value {
    let output = Command::new(example())
        .args(["--latency", "40", "--json", "--memory"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).unwrap()
}

const NODES: [&str; 8] = [
    "research", "post", "linkedin", "tweet", "email", "meta", "checked", "publish",
];

async fn crash_and_resume(name: &str, kill_at: Option<&str>, extra: &[&str]) {
    let scenario = Scenario::new(name);
    let id = scenario.run_and_kill(kill_at, extra);
    let store = scenario.store();
    assert_eq!(store.run(id).await.unwrap().status, RunStatus::Running);
    let completed: BTreeSet<String> = store
        .checkpoints(id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.node)
        .collect();
    let before = scenario.journal();
    assert!(
        completed.len() < NODES.len(),
        "killed before the end ({name}): {completed:?}"
    );

    let output = scenario.resume(id);
    assert_eq!(
        output,
        uninterrupted(),
        "the same output as without a crash"
    );

    let after = scenario.journal();
    for node in NODES {
        let runs = after.get(node).copied().unwrap_or(0);
        if completed.contains(node) {
            assert_eq!(
                runs, 1,
                "`{node}` completed before the kill and never ran again"
            );
        } else {
            let earlier = before.get(node).copied().unwrap_or(0);
            assert_eq!(
                runs,
                earlier + 1,
                "`{node}` ran once more after the restart"
            );
        }
    }

    let record = store.run(id).await.unwrap();
    assert_eq!(record.status, RunStatus::Succeeded);
    let events = store.events(id, 0).await.unwrap();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, i as u64, "gapless");
    }
    for (i, event) in events.iter().enumerate() {
        if let EventKind::StepStarted { node, .. } = &event.kind {
            let settled = events[i + 1..].iter().any(|later| match &later.kind {
                EventKind::StepSucceeded { node: n, .. }
                | EventKind::StepStarted { node: n, .. } => n == node,
                _ => false,
            });
            assert!(
                settled,
                "`{node}` started at {i} and then neither succeeded nor restarted"
            );
        }
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::RunResumed { .. })),
        "the log shows the resume"
    );
    assert!(matches!(
        events.last().map(|e| &e.kind),
        Some(EventKind::RunFinished { .. })
    ));
}

#[tokio::test]
async fn killed_while_the_blog_post_is_written() {
    crash_and_resume("post", Some("post"), &[]).await;
}

#[tokio::test]
async fn killed_while_the_social_posts_are_written_in_parallel() {
    crash_and_resume("social", Some("meta"), &[]).await;
}

#[tokio::test]
async fn killed_while_publishing() {
    crash_and_resume("publish", Some("publish"), &[]).await;
}

#[tokio::test]
async fn killed_during_a_checkpoint_write() {
    crash_and_resume("checkpoint", None, &["--kill-during-checkpoint", "3"]).await;
}
