//! Crash safety with a real process and a real kill: the content pipeline example runs in a
//! child process against a SQLite file, is killed with SIGKILL while steps are in flight
//! (or while a checkpoint is being written), and is restarted with `--resume`.
//!
//! Asserted each time: the output equals an uninterrupted run's; no node whose checkpoint
//! was stored ran again (the steps note each execution in a journal file); the stored event
//! log is gapless and every started step later succeeded or was started again. And a run
//! waiting for an editor's review is answered by a new process.

#[path = "support/example.rs"]
mod example;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use workflow::store::{RunStatus, SqliteStore, Store};
use workflow::{EventKind, RunId};

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
        let mut command = Command::new(example::example());
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
        // Each line: the node, then its run's key.
        for line in text.lines() {
            let node = line.split(' ').next().unwrap_or_default();
            *counts.entry(node.to_owned()).or_insert(0) += 1;
        }
        counts
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(self.dir.join("runs.db")).unwrap()
    }
}

fn uninterrupted() -> serde_json::Value {
    let output = Command::new(example::example())
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

/// Human in the loop across processes: a run with `--review` stops at the editor's review
/// and its process exits; a new process answers with `--approve <id>` and the run
/// publishes, without running any step before the review again.
#[tokio::test]
async fn a_review_waits_across_processes_and_an_approval_in_a_new_process_publishes() {
    let scenario = Scenario::new("review");
    let output = scenario
        .command(&["--review"])
        .output()
        .expect("the example runs");
    assert!(output.status.success(), "waiting is not a failure");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("waits for an editor's review"), "{stdout}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let id: RunId = stderr
        .lines()
        .find_map(|line| line.strip_prefix("run "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("the run id on stderr");

    let store = scenario.store();
    assert_eq!(store.run(id).await.unwrap().status, RunStatus::Waiting);
    let interrupt = store
        .interrupt(id)
        .await
        .unwrap()
        .expect("a pending review");
    assert_eq!(interrupt.node, "review");
    let before = scenario.journal();
    for node in NODES.iter().filter(|&&node| node != "publish") {
        assert_eq!(
            before.get(*node),
            Some(&1),
            "{node} ran once before the pause"
        );
    }
    drop(store);

    let output = scenario
        .command(&["--approve", &id.to_string()])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "the answered run succeeds");
    let published: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the output as JSON");
    assert!(published.get("url").is_some(), "{published}");

    let store = scenario.store();
    assert_eq!(store.run(id).await.unwrap().status, RunStatus::Succeeded);
    let after = scenario.journal();
    for node in NODES.iter().filter(|&&node| node != "publish") {
        assert_eq!(after.get(*node), Some(&1), "{node} did not run again");
    }
    assert_eq!(
        after.get("publish"),
        Some(&1),
        "publish ran once, after the approval"
    );
    let kinds: Vec<String> = store
        .events(id, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::to_value(&e.kind).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for expected in ["run_waiting", "answered", "run_resumed", "run_finished"] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "{expected} in {kinds:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&scenario.dir);
}
