//! The content pipeline, run with live progress and a summary. Every run is durable: it is
//! kept in a SQLite file (`content_pipeline.db`, or `--db PATH`; `--db postgres://...` keeps
//! it in PostgreSQL), so a run whose process died resumes where it stopped, and a run with
//! an editor's review waits, stored, for the editor's answer.
//!
//! ```text
//! cargo run --example content_pipeline
//! cargo run --example content_pipeline -- --resume <run-id>     # after a crash or Ctrl-C
//! cargo run --example content_pipeline -- --review              # waits for an editor...
//! cargo run --example content_pipeline -- --approve <run-id>    # ...who approves
//! cargo run --example content_pipeline -- --reject <run-id> 'off topic'
//! cargo run --example content_pipeline -- --topic "Rust for data teams" --slow linkedin
//! cargo run --example content_pipeline -- --flaky research     # watch retries happen
//! cargo run --example content_pipeline -- --fail email         # skipped: the posts still go out
//! cargo run --example content_pipeline -- --fail linkedin      # a failing step fails the run
//! cargo run --example content_pipeline -- --graph              # print the graph as Mermaid
//! cargo run --example content_pipeline -- runs                  # the stored runs
//! cargo run --example content_pipeline -- show <run-id>         # nodes, timings, outputs
//! cargo run --example content_pipeline -- events <run-id>       # the event log, as JSON
//! cargo run --example content_pipeline -- serve                 # HTTP API and web page on :8080
//! cargo run --example content_pipeline -- --db postgres://... worker        # join the workers
//! cargo run --example content_pipeline -- --db postgres://... submit --count 100 --wait
//! ```

mod pipeline;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pipeline::{ContentPipeline, Ctx, Published, Review, ReviewedPipeline, Topic, editor_review};
use workflow::mock::MockLlm;
use workflow::prelude::*;
use workflow::store::{MemoryStore, Store};
use workflow::{Progress, RunId};

const USAGE: &str = "usage: content_pipeline [--topic TEXT] [--audience TEXT] [--latency MS] \
[--slow STEP]... [--flaky STEP]... [--fail STEP]... [--graph] [--dot] [--json] \
[--db PATH|URL | --memory] [--review] [--resume RUN_ID] [--approve RUN_ID] [--reject RUN_ID REASON]";

/// What to do.
enum Action {
    /// Start a new run.
    Start,
    /// Resume a run that did not end.
    Resume(RunId),
    /// Answer an editor's review.
    Answer(RunId, Review),
}

struct Args {
    topic: String,
    audience: String,
    latency: Duration,
    slow: Vec<String>,
    flaky: Vec<String>,
    fail: Vec<String>,
    graph: Option<&'static str>,
    json: bool,
    db: Option<PathBuf>,
    review: bool,
    action: Action,
    journal: Option<PathBuf>,
    kill_during_checkpoint: Option<usize>,
}

fn run_id(text: &str) -> Result<RunId, String> {
    text.parse().map_err(|_| format!("not a run id: {text}"))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        topic: "Compile-time checked workflows in Rust".into(),
        audience: "backend engineers".into(),
        latency: Duration::from_millis(150),
        slow: Vec::new(),
        flaky: Vec::new(),
        fail: Vec::new(),
        graph: None,
        json: false,
        db: Some(PathBuf::from("content_pipeline.db")),
        review: false,
        action: Action::Start,
        journal: None,
        kill_during_checkpoint: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--topic" => args.topic = value()?,
            "--audience" => args.audience = value()?,
            "--latency" => {
                let ms = value()?;
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("--latency: not a number: {ms}"))?;
                args.latency = Duration::from_millis(ms);
            }
            "--slow" => args.slow.push(value()?),
            "--flaky" => args.flaky.push(value()?),
            "--fail" => args.fail.push(value()?),
            "--graph" => args.graph = Some("mermaid"),
            "--dot" => args.graph = Some("dot"),
            "--json" => args.json = true,
            "--db" => args.db = Some(PathBuf::from(value()?)),
            "--memory" => args.db = None,
            "--review" => args.review = true,
            "--resume" => args.action = Action::Resume(run_id(&value()?)?),
            "--approve" => args.action = Action::Answer(run_id(&value()?)?, Review::Approve),
            "--reject" => {
                let id = run_id(&value()?)?;
                let reason = value()?;
                args.action = Action::Answer(id, Review::Reject { reason });
            }
            // For tests: a file where each step notes that it runs, and a SIGKILL sent to
            // this process while its N-th checkpoint is being written.
            "--journal" => args.journal = Some(PathBuf::from(value()?)),
            "--kill-during-checkpoint" => {
                let n = value()?;
                args.kill_during_checkpoint =
                    Some(n.parse().map_err(|_| format!("not a number: {n}"))?);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// The run commands (`runs`, `show`, `events`, `resume`, `graph`) of `workflow::cli`, and
/// `serve` of `workflow::http`.
#[derive(clap::Parser)]
#[command(name = "content_pipeline")]
struct Inspect {
    /// Where the runs are kept: an SQLite file, or a `postgres://` URL.
    #[arg(long, global = true, default_value = "content_pipeline.db")]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    #[command(flatten)]
    Runs(workflow::cli::RunsCommand),
    /// Join the workers that run submitted runs (`--db` must be a `postgres://` URL
    /// that every worker and submitter shares).
    Worker {
        #[command(flatten)]
        args: workflow::worker::WorkerArgs,
        /// How long each mock LLM call takes, in milliseconds.
        #[arg(long, default_value_t = 150)]
        latency: u64,
        /// Append each step execution (node and run) to this file.
        #[arg(long)]
        journal: Option<PathBuf>,
    },
    /// Submit runs to the workers and print their ids; with `--wait`, wait for them to
    /// end and print each one's status.
    Submit {
        /// How many runs.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// What to write about (numbered when `--count` is more than 1).
        #[arg(long, default_value = "Rust for data teams")]
        topic: String,
        /// For whom.
        #[arg(long, default_value = "engineers")]
        audience: String,
        /// Runs of the pipeline with an editor's review.
        #[arg(long)]
        review: bool,
        /// Wait until every run has ended (or waits for its review).
        #[arg(long)]
        wait: bool,
    },
    /// Serve both workflows over HTTP: the API, live events and a web page.
    Serve {
        #[command(flatten)]
        args: workflow::http::ServeArgs,
        /// How long each mock LLM call takes, in milliseconds.
        #[arg(long, default_value_t = 150)]
        latency: u64,
    },
}

/// Carries out a run command against the store.
async fn inspect(inspect: Inspect) -> ExitCode {
    let store = match workflow::store::open(&inspect.db.to_string_lossy()).await {
        Ok(store) => store,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let latency = match &inspect.command {
        Command::Serve { latency, .. } | Command::Worker { latency, .. } => {
            Duration::from_millis(*latency)
        }
        Command::Runs(_) | Command::Submit { .. } => Duration::ZERO,
    };
    let mut ctx = Ctx::new(MockLlm::new().with_latency(latency));
    if let Command::Worker {
        journal: Some(path),
        ..
    } = &inspect.command
    {
        ctx = match ctx.with_journal(path) {
            Ok(ctx) => ctx,
            Err(error) => {
                eprintln!("error: cannot open the journal: {error}");
                return ExitCode::FAILURE;
            }
        };
    }
    let ctx = Arc::new(ctx);
    let result = match inspect.command {
        Command::Runs(command) => {
            let plain = Durable::with_shared_store(
                ContentPipeline::with_context(Arc::clone(&ctx)),
                Arc::clone(&store),
            );
            let reviewed =
                Durable::with_shared_store(ReviewedPipeline::with_context(ctx), Arc::clone(&store));
            let workflows: [&dyn workflow::DynDurable; 2] = [&plain, &reviewed];
            let mut out = std::io::stdout().lock();
            command
                .execute(&*store, &workflows, &mut out)
                .await
                .map_err(|error| error.to_string())
        }
        Command::Worker { args, .. } => {
            let worker = workflow::worker::Worker::with_shared_store(store)
                .workflow(ContentPipeline::with_context(Arc::clone(&ctx)))
                .workflow(ReviewedPipeline::with_context(ctx));
            args.run(worker).await.map_err(|error| error.to_string())
        }
        Command::Submit {
            count,
            topic,
            audience,
            review,
            wait,
        } => {
            let plain = Durable::with_shared_store(
                ContentPipeline::with_context(Arc::clone(&ctx)),
                Arc::clone(&store),
            );
            let reviewed =
                Durable::with_shared_store(ReviewedPipeline::with_context(ctx), Arc::clone(&store));
            let submitter: &dyn workflow::DynDurable = if review { &reviewed } else { &plain };
            submit(&*store, submitter, count, (topic, audience), wait).await
        }
        Command::Serve { args, .. } => {
            let registry = workflow::http::Registry::with_shared_store(store)
                .workflow(ContentPipeline::with_context(Arc::clone(&ctx)))
                .workflow(ReviewedPipeline::with_context(ctx));
            args.serve(registry)
                .await
                .map_err(|error| error.to_string())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Submits `count` runs to the workers, printing their ids; with `wait`, waits for them
/// to end and prints each one's status.
async fn submit(
    store: &dyn Store,
    workflow: &dyn workflow::DynDurable,
    count: usize,
    (topic, audience): (String, String),
    wait: bool,
) -> Result<(), String> {
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let title = if count == 1 {
            topic.clone()
        } else {
            format!("{topic} #{}", i + 1)
        };
        let input = serde_json::json!({ "title": title, "audience": audience });
        let id = workflow
            .submit_json(input)
            .await
            .map_err(|error| error.to_string())?;
        println!("{id}");
        ids.push(id);
    }
    if !wait {
        return Ok(());
    }
    for id in ids {
        let record = loop {
            let record = store.run(id).await.map_err(|error| error.to_string())?;
            if record.status.is_final() || record.status == workflow::store::RunStatus::Waiting {
                break record;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        match &record.error {
            Some(error) => eprintln!("run {id}: {} ({error})", record.status),
            None => eprintln!("run {id}: {}", record.status),
        }
    }
    Ok(())
}

/// Whether the arguments name a run command, before or after `--db PATH`.
fn is_run_command(mut args: impl Iterator<Item = String>) -> bool {
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--db" => {
                args.next();
            }
            arg if arg.starts_with("--db=") => {}
            arg => {
                return [
                    "runs", "show", "events", "resume", "graph", "serve", "worker", "submit",
                ]
                .contains(&arg);
            }
        }
    }
    false
}

#[tokio::main]
async fn main() -> ExitCode {
    if is_run_command(std::env::args().skip(1)) {
        return inspect(<Inspect as clap::Parser>::parse()).await;
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let graph = if args.review {
        ReviewedPipeline::graph()
    } else {
        ContentPipeline::graph()
    };
    match args.graph {
        Some("mermaid") => {
            print!("{}", graph.to_mermaid());
            return ExitCode::SUCCESS;
        }
        Some(_) => {
            print!("{}", graph.to_dot());
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    match run(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// The mock LLM the flags ask for. Prompts start with the step's tag, e.g.
/// "[linkedin] ...", so flags can target a step.
fn llm(args: &Args) -> MockLlm {
    let mut llm = MockLlm::new().with_latency(args.latency);
    for step in &args.slow {
        llm = llm.slow_when(format!("[{step}]"), args.latency * 8);
    }
    for step in &args.flaky {
        llm = llm.fail_when(format!("[{step}]"), 2);
    }
    for step in &args.fail {
        llm = llm.always_fail_when(format!("[{step}]"));
    }
    llm
}

async fn run(args: Args) -> Result<ExitCode, RunError> {
    let mut ctx = Ctx::new(llm(&args));
    if let Some(path) = &args.journal {
        ctx = ctx
            .with_journal(path)
            .map_err(|error| RunError::Internal(format!("cannot open the journal: {error}")))?;
    }
    let ctx = Arc::new(ctx);
    let mut store: Arc<dyn Store> = match &args.db {
        Some(path) => workflow::store::open(&path.to_string_lossy()).await?,
        None => Arc::new(MemoryStore::new()),
    };
    if let Some(n) = args.kill_during_checkpoint {
        store = Arc::new(store::KillDuringCheckpoint::new(store, n));
    }
    let plain = Durable::with_shared_store(
        ContentPipeline::with_context(Arc::clone(&ctx)),
        Arc::clone(&store),
    );
    let reviewed =
        Durable::with_shared_store(ReviewedPipeline::with_context(ctx), Arc::clone(&store));
    let topic = Topic {
        title: args.topic.clone(),
        audience: args.audience.clone(),
    };
    let reviewed_name = ReviewedPipeline::graph().name;
    let (handle, graph) = match args.action {
        Action::Start if args.review => (reviewed.start(topic).await?, ReviewedPipeline::graph()),
        Action::Start => (plain.start(topic).await?, ContentPipeline::graph()),
        Action::Resume(id) if store.run(id).await?.workflow == reviewed_name => {
            (reviewed.resume(id).await?, ReviewedPipeline::graph())
        }
        Action::Resume(id) => (plain.resume(id).await?, ContentPipeline::graph()),
        Action::Answer(id, review) => (
            reviewed.answer::<editor_review>(id, review).await?,
            ReviewedPipeline::graph(),
        ),
    };
    let id = handle.id();
    match &args.db {
        Some(path) => eprintln!("run {id} (stored in {})", path.display()),
        None => eprintln!("run {id} (in memory)"),
    }
    let events = Progress::stderr(graph).follow(handle.events()).await;
    let result = handle.await;
    eprintln!("\n{}\n", RunSummary::new(graph, &events));
    match result {
        Ok(published) => {
            print_published(&published, args.json);
            Ok(ExitCode::SUCCESS)
        }
        Err(RunError::Waiting { request, .. }) => {
            println!("run {id} waits for an editor's review of:");
            println!(
                "{}",
                serde_json::to_string_pretty(&request).expect("JSON prints")
            );
            println!("answer with:");
            println!("  cargo run --example content_pipeline -- --approve {id}");
            println!("  cargo run --example content_pipeline -- --reject {id} 'reason'");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Err(error),
    }
}

fn print_published(published: &Published, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(published).expect("outputs serialize")
        );
        return;
    }
    println!("published {}", published.url);
    match &published.email_subject {
        Some(subject) => println!("  email: {subject}"),
        None => println!("  email: (skipped)"),
    }
    for post in &published.posts {
        println!("  {}: {}", post.network, post.text);
    }
    println!("  hashtags: {}", published.hashtags.join(" "));
    for warning in &published.warnings {
        println!("  warning: {warning}");
    }
}
