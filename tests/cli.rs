//! The command line a program mounts (`workflow::cli`): what each command prints, its
//! errors, and parsing through clap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use workflow::cli::{GraphFormat, RunsCommand};
use workflow::prelude::*;
use workflow::store::{
    Checkpoint, Interrupt, MemoryStore, RunRecord, RunStatus, SqliteStore, Store, Timestamp,
};
use workflow::{DynDurable, RunId};

/// While `hang` is set, `slow` waits forever: a process about to be killed.
#[derive(Default)]
pub struct Gate {
    hang: AtomicBool,
    slow_started: AtomicUsize,
}

#[step]
fn fetch(n: u32) -> u32 {
    n + 1
}

#[step]
fn enrich(n: u32) -> String {
    format!("item-{n}")
}

#[step]
async fn slow(ctx: &Gate, n: u32) -> u32 {
    ctx.slow_started.fetch_add(1, Ordering::SeqCst);
    while ctx.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    n * 10
}

#[step]
#[allow(clippy::ptr_arg)]
fn combine(label: &String, big: u32) -> String {
    format!("{label}:{big}")
}

workflow! {
    /// fetch feeds enrich and slow; combine joins them.
    pub Items(ctx: Gate, n: u32) -> String {
        let fetched = fetch(n);
        let label = enrich(fetched);
        let big = slow(fetched);
        combine(label, big)
    }
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    count: u32,
}

#[step]
fn bump(tally: &mut Tally) {
    tally.count += 1;
}

#[step]
fn enough(tally: &mut Tally) -> bool {
    tally.count >= 2
}

workflow! {
    /// Bumps until the tally reaches two.
    pub Count(tally: &mut Tally) {
        bump -> enough;
        enough => match {
            true => END,
            false => bump,
        } max 5 => END;
    }
}

fn items(store: &Arc<dyn Store>) -> Durable<Items> {
    Durable::with_shared_store(Items::new(Gate::default()), Arc::clone(store))
}

/// Runs `command` and returns what it printed.
async fn run(
    command: RunsCommand,
    store: &Arc<dyn Store>,
    workflows: &[&dyn DynDurable],
) -> Result<String, workflow::cli::CliError> {
    let mut out = Vec::new();
    command.execute(&**store, workflows, &mut out).await?;
    Ok(String::from_utf8(out).expect("the output is UTF-8"))
}

/// Replaces what varies from run to run: times (by a placeholder of the same width, so
/// that columns stay aligned) and durations.
fn normalize(text: &str) -> String {
    let lines = text.lines().map(|line| {
        let mut line = line.to_owned();
        // `YYYY-MM-DD HH:MM:SS`: digits and separators at fixed places.
        let is_time = |s: &[u8]| {
            s.len() == 19
                && s.iter().enumerate().all(|(i, &b)| match i {
                    4 | 7 => b == b'-',
                    10 => b == b' ',
                    13 | 16 => b == b':',
                    _ => b.is_ascii_digit(),
                })
        };
        let mut i = 0;
        while i + 19 <= line.len() {
            if is_time(&line.as_bytes()[i..i + 19]) {
                line.replace_range(i..i + 19, "YYYY-MM-DD HH:MM:SS");
                i += 19;
            } else {
                i += 1;
            }
        }
        line.split(' ')
            .map(|word| {
                let number = word.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let unit = &word[number.len()..];
                let is_duration = ["us", "ms", "s"].contains(&unit)
                    && !number.is_empty()
                    && number.chars().all(|c| c.is_ascii_digit() || c == '.');
                if is_duration { "<duration>" } else { word }
            })
            .collect::<Vec<_>>()
            .join(" ")
    });
    lines.map(|line| line + "\n").collect()
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("workflow-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("runs.db")
}

#[tokio::test]
async fn runs_lists_the_newest_first() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let items = items(&store);
    let none = run(RunsCommand::Runs { limit: 20 }, &store, &[&items]).await;
    assert_eq!(none.unwrap(), "no runs\n");

    let first = items.start(1).await.unwrap();
    let first_id = first.id();
    first.await.unwrap();
    let second = items.start(2).await.unwrap();
    let second_id = second.id();
    second.await.unwrap();

    let listed = run(RunsCommand::Runs { limit: 20 }, &store, &[&items]).await;
    assert_eq!(
        normalize(&listed.unwrap()),
        format!(
            "\
ID                                    WORKFLOW  STATUS     CREATED (UTC)        UPDATED (UTC)
{second_id}  Items     succeeded  YYYY-MM-DD HH:MM:SS  YYYY-MM-DD HH:MM:SS
{first_id}  Items     succeeded  YYYY-MM-DD HH:MM:SS  YYYY-MM-DD HH:MM:SS
"
        )
    );
    let limited = run(RunsCommand::Runs { limit: 1 }, &store, &[&items]).await;
    assert_eq!(limited.unwrap().lines().count(), 2, "a header and one run");
}

#[tokio::test]
async fn show_prints_a_completed_run_node_by_node() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let items = items(&store);
    let handle = items.start(1).await.unwrap();
    let id = handle.id();
    handle.await.unwrap();

    let shown = run(RunsCommand::Show { id, json: false }, &store, &[&items]).await;
    assert_eq!(
        normalize(&shown.unwrap()),
        format!(
            r#"run       {id}
workflow  Items
status    succeeded
created   YYYY-MM-DD HH:MM:SS UTC
updated   YYYY-MM-DD HH:MM:SS UTC
input     1
output    "item-2:20"

nodes
  ✓  fetched  1 attempt  <duration>
  ✓  label    1 attempt  <duration>
  ✓  big      1 attempt  <duration>
  ✓  combine  1 attempt  <duration>

outputs
  fetched = 2
  label = "item-2"
  big = 20
  combine = "item-2:20"
"#
        )
    );
}

#[tokio::test]
async fn show_json_is_one_document_with_everything_stored() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let items = items(&store);
    let handle = items.start(1).await.unwrap();
    let id = handle.id();
    handle.await.unwrap();

    let shown = run(RunsCommand::Show { id, json: true }, &store, &[]).await;
    let document: serde_json::Value = serde_json::from_str(&shown.unwrap()).unwrap();
    let record = store.run(id).await.unwrap();
    let checkpoints = store.checkpoints(id).await.unwrap();
    assert_eq!(
        document,
        json!({
            "record": record,
            "checkpoints": checkpoints,
            "state": null,
            "interrupt": null,
        })
    );
}

/// A run stored by hand, with fixed times: every character of `show` is known.
#[tokio::test]
async fn show_prints_pending_nodes_and_the_input_a_run_waits_for() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let items = items(&store);
    let id: RunId = "01900000-0000-7000-8000-000000000001".parse().unwrap();
    let noon = 1_700_000_000_000_000; // 2023-11-14 22:13:20 UTC, in µs
    let mut record = RunRecord::new(id, "Items", Items::graph().structural_hash(), json!(4));
    record.created_at = Timestamp(noon);
    record.updated_at = Timestamp(noon);
    store.create_run(record).await.unwrap();
    let done = |node: &str, output, attempts, micros| Checkpoint {
        node: node.to_owned(),
        output,
        attempts,
        started_at: Timestamp(noon),
        finished_at: Timestamp(noon + micros),
        writes: Vec::new(),
    };
    let checkpoints = vec![
        done("fetched", json!(5), 1, 250),
        done(
            "label",
            json!({"name": "item-5", "tags": ["a"]}),
            3,
            1_500_000,
        ),
    ];
    store.checkpoint(id, checkpoints, vec![]).await.unwrap();
    let interrupt = Interrupt {
        node: "big".to_owned(),
        request: json!({"question": "how big?"}),
        created_at: Timestamp(noon + 2_000_000),
    };
    store.suspend(id, interrupt, vec![]).await.unwrap();

    let shown = run(RunsCommand::Show { id, json: false }, &store, &[&items]).await;
    let shown = shown.unwrap();
    let (head, rest) = shown.split_once("updated   ").unwrap();
    assert_eq!(
        head,
        format!(
            "\
run       {id}
workflow  Items
status    waiting
created   2023-11-14 22:13:20 UTC
"
        )
    );
    // `suspend` sets the record's update time: now.
    assert_eq!(
        rest.split_once('\n').unwrap().1,
        r#"input     4

nodes
  ✓  fetched  1 attempt   250us
  ✓  label    3 attempts  1.50s
  ·  big      waiting for input
  ·  combine  pending

outputs
  fetched = 5
  label = {
    "name": "item-5",
    "tags": [
      "a"
    ]
  }

waiting for input
  node     big
  since    2023-11-14 22:13:22 UTC
  request  {
             "question": "how big?"
           }
"#
    );

    // Without the workflow, only the completed nodes are known.
    let shown = run(RunsCommand::Show { id, json: false }, &store, &[]).await;
    let shown = shown.unwrap();
    let nodes = shown.split("\n\n").nth(1).unwrap();
    assert_eq!(
        nodes,
        "nodes\n  ✓  fetched  1 attempt   250us\n  ✓  label    3 attempts  1.50s"
    );
}

#[tokio::test]
async fn show_prints_a_state_graphs_latest_state() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let count = Durable::with_shared_store(Count::new(), Arc::clone(&store));
    let handle = count.start(Tally::default()).await.unwrap();
    let id = handle.id();
    handle.await.unwrap();

    let shown = run(RunsCommand::Show { id, json: false }, &store, &[&count]).await;
    assert_eq!(
        normalize(&shown.unwrap()),
        format!(
            r#"run       {id}
workflow  Count
status    succeeded
created   YYYY-MM-DD HH:MM:SS UTC
updated   YYYY-MM-DD HH:MM:SS UTC
input     {{
            "count": 0
          }}
output    {{
            "count": 2
          }}

state
  step   4
  last   enough  1 attempt  <duration>
  next   END
  state  {{
           "count": 2
         }}
"#
        )
    );
}

#[tokio::test]
async fn events_print_one_json_object_per_line() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let items = items(&store);
    let handle = items.start(1).await.unwrap();
    let id = handle.id();
    handle.await.unwrap();
    let stored = store.events(id, 0).await.unwrap();
    assert!(stored.len() > 3);

    let printed = run(RunsCommand::Events { id, from: 0 }, &store, &[]).await;
    let parsed: Vec<Event> = printed
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one event"))
        .collect();
    // Compared as JSON: times in whole microseconds, as a store keeps them on disk.
    let json = |events: &[Event]| serde_json::to_value(events).unwrap();
    assert_eq!(json(&parsed), json(&stored));

    let printed = run(RunsCommand::Events { id, from: 2 }, &store, &[]).await;
    let printed = printed.unwrap();
    let first: Event = serde_json::from_str(printed.lines().next().unwrap()).unwrap();
    assert_eq!(first.seq, 2);
    assert_eq!(printed.lines().count(), stored.len() - 2);
}

/// Starts a run in a runtime of its own and drops that runtime once `fetched` and `label`
/// are checkpointed while `slow` hangs: what a killed process leaves behind.
fn crash_mid_run(store: &Arc<dyn Store>) -> RunId {
    let gate = Arc::new(Gate {
        hang: AtomicBool::new(true),
        slow_started: AtomicUsize::new(0),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let durable =
        Durable::with_shared_store(Items::with_context(Arc::clone(&gate)), Arc::clone(store));
    let id = runtime.block_on(async {
        let handle = durable.start(1).await.unwrap();
        let id = handle.id();
        while store.checkpoints(id).await.unwrap().len() < 2
            || gate.slow_started.load(Ordering::SeqCst) == 0
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        id
    });
    runtime.shutdown_background();
    id
}

#[tokio::test]
async fn resume_finishes_a_crashed_run_and_prints_its_output() {
    let path = temp_db("resume");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let id = tokio::task::spawn_blocking({
        let store = Arc::clone(&store);
        move || crash_mid_run(&store)
    })
    .await
    .unwrap();
    let items = items(&store);

    let shown = run(RunsCommand::Show { id, json: false }, &store, &[&items]).await;
    let shown = normalize(&shown.unwrap());
    assert!(shown.contains("\nstatus    running\n"), "{shown}");
    assert!(
        shown.contains(
            "
nodes
  ✓  fetched  1 attempt  <duration>
  ✓  label    1 attempt  <duration>
  ·  big      pending
  ·  combine  pending

outputs
  fetched = 2
  label = \"item-2\"
"
        ),
        "{shown}"
    );

    let resumed = run(RunsCommand::Resume { id }, &store, &[&items]).await;
    assert_eq!(resumed.unwrap(), "\"item-2:20\"\n");
    assert_eq!(store.run(id).await.unwrap().status, RunStatus::Succeeded);

    let again = run(RunsCommand::Resume { id }, &store, &[&items]).await;
    assert_eq!(
        again.unwrap_err().to_string(),
        format!("run {id} cannot resume: it has ended (succeeded)")
    );
}

#[tokio::test]
async fn resume_needs_the_runs_workflow() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let items = items(&store);
    let count = Durable::with_shared_store(Count::new(), Arc::clone(&store));
    let id = RunId::new();
    let record = RunRecord::new(id, "Other", "0123456789abcdef", json!(1));
    store.create_run(record).await.unwrap();

    let error = run(RunsCommand::Resume { id }, &store, &[&items, &count]).await;
    assert_eq!(
        error.unwrap_err().to_string(),
        "unknown workflow `Other`; this program has `Items`, `Count`"
    );
    let error = run(RunsCommand::Resume { id }, &store, &[]).await;
    assert_eq!(
        error.unwrap_err().to_string(),
        "unknown workflow `Other`; this program has no workflows"
    );
}

#[tokio::test]
async fn unknown_run_ids_are_reported() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let items = items(&store);
    let id = RunId::new();
    let commands = [
        RunsCommand::Show { id, json: false },
        RunsCommand::Show { id, json: true },
        RunsCommand::Events { id, from: 0 },
        RunsCommand::Resume { id },
    ];
    for command in commands {
        let error = run(command.clone(), &store, &[&items]).await;
        let error = error.expect_err("an unknown run is an error");
        assert!(
            matches!(error, workflow::cli::CliError::Store(_)),
            "{command:?}: {error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!("no run with id {id}"),
            "{command:?}"
        );
    }
}

#[tokio::test]
async fn graph_prints_mermaid_dot_or_json() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let items = items(&store);
    let count = Durable::with_shared_store(Count::new(), Arc::clone(&store));
    let graph = |workflow: Option<&str>, format| RunsCommand::Graph {
        workflow: workflow.map(str::to_owned),
        format,
    };

    let mermaid = run(graph(None, GraphFormat::Mermaid), &store, &[&items]).await;
    assert_eq!(mermaid.unwrap(), Items::graph().to_mermaid());
    let dot = run(
        graph(Some("Count"), GraphFormat::Dot),
        &store,
        &[&items, &count],
    )
    .await;
    assert_eq!(dot.unwrap(), Count::graph().to_dot());
    let printed = run(
        graph(Some("Items"), GraphFormat::Json),
        &store,
        &[&items, &count],
    )
    .await;
    let printed: serde_json::Value = serde_json::from_str(&printed.unwrap()).unwrap();
    assert_eq!(printed, serde_json::to_value(Items::graph()).unwrap());
    assert_eq!(printed["name"], "Items");

    let error = run(graph(None, GraphFormat::Mermaid), &store, &[&items, &count]).await;
    assert_eq!(
        error.unwrap_err().to_string(),
        "name a workflow: this program has `Items`, `Count`"
    );
    let error = run(graph(None, GraphFormat::Mermaid), &store, &[]).await;
    assert_eq!(
        error.unwrap_err().to_string(),
        "this program has no workflows"
    );
    let error = run(
        graph(Some("Nope"), GraphFormat::Dot),
        &store,
        &[&items, &count],
    )
    .await;
    assert_eq!(
        error.unwrap_err().to_string(),
        "unknown workflow `Nope`; this program has `Items`, `Count`"
    );
}

/// A program's own command line, with the run commands mounted beside its own.
#[derive(Debug, PartialEq, clap::Parser)]
#[command(name = "prog")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, PartialEq, clap::Subcommand)]
enum Command {
    /// Start a run.
    Start { n: u32 },
    #[command(flatten)]
    Runs(RunsCommand),
}

fn parse(args: &[&str]) -> Command {
    match Cli::try_parse_from(args) {
        Ok(cli) => cli.command,
        Err(error) => panic!("{args:?} does not parse: {error}"),
    }
}

fn parse_error(args: &[&str]) -> clap::error::ErrorKind {
    Cli::try_parse_from(args)
        .expect_err("the arguments are wrong")
        .kind()
}

#[test]
fn runs_commands_parse_inside_a_programs_parser() {
    let id: RunId = "01900000-0000-7000-8000-000000000001".parse().unwrap();
    let text = id.to_string();
    let runs = Command::Runs;
    assert_eq!(parse(&["prog", "start", "3"]), Command::Start { n: 3 });
    assert_eq!(
        parse(&["prog", "runs"]),
        runs(RunsCommand::Runs { limit: 20 })
    );
    assert_eq!(
        parse(&["prog", "runs", "--limit", "5"]),
        runs(RunsCommand::Runs { limit: 5 })
    );
    assert_eq!(
        parse(&["prog", "show", &text, "--json"]),
        runs(RunsCommand::Show { id, json: true })
    );
    assert_eq!(
        parse(&["prog", "events", &text, "--from", "7"]),
        runs(RunsCommand::Events { id, from: 7 })
    );
    assert_eq!(
        parse(&["prog", "resume", &text]),
        runs(RunsCommand::Resume { id })
    );
    assert_eq!(
        parse(&["prog", "graph"]),
        runs(RunsCommand::Graph {
            workflow: None,
            format: GraphFormat::Mermaid
        })
    );
    assert_eq!(
        parse(&["prog", "graph", "Items", "--format", "dot"]),
        runs(RunsCommand::Graph {
            workflow: Some("Items".to_owned()),
            format: GraphFormat::Dot
        })
    );

    assert_eq!(
        parse_error(&["prog", "show", "not-an-id"]),
        clap::error::ErrorKind::ValueValidation
    );
    assert_eq!(
        parse_error(&["prog", "graph", "--format", "svg"]),
        clap::error::ErrorKind::InvalidValue
    );
}
