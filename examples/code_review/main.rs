//! A code-review agent: reviews a Rust source file, revises what can be fixed mechanically,
//! and loops until the score reaches the threshold or five rounds have run. Runs are kept in
//! a SQLite file (`code_review.db`, or `--db PATH`): a run resumes after a crash, and the
//! `detect` step is cached, so reviewing the same source again reuses its findings.
//!
//! ```text
//! cargo run --example code_review                          # the bundled sample
//! cargo run --example code_review -- src/lib.rs            # any Rust file
//! cargo run --example code_review -- --threshold 9.5       # a bar it cannot reach: the bound ends the loop
//! cargo run --example code_review -- --write revised.rs    # keep the revised source
//! cargo run --example code_review -- --graph               # the state graph as Mermaid
//! cargo run --example code_review -- --resume <run-id>     # a run whose process died
//! cargo run --example code_review -- runs                  # the stored runs
//! cargo run --example code_review -- show <run-id>         # its latest state, as JSON
//! cargo run --example code_review -- events <run-id>       # its event log
//! cargo run --example code_review -- serve                 # HTTP API and web page on :8080
//! cargo run --example code_review -- --db postgres://... worker   # join the workers
//! cargo run --example code_review -- --db postgres://... submit   # a review for them
//! ```

mod analysis;
mod review;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use analysis::{DEFAULT_THRESHOLD, Review, SAMPLE};
use review::CodeReview;
use workflow::prelude::*;
use workflow::store::{MemoryStore, Store};
use workflow::{Progress, RunId};

const USAGE: &str = "usage: code_review [PATH] [--threshold SCORE] [--write PATH] [--graph] \
[--quiet] [--db PATH | --memory] [--resume RUN_ID]
       code_review runs|show|events|resume|graph|serve ...   (see `code_review runs --help`)";

struct Args {
    path: Option<String>,
    threshold: f64,
    write: Option<String>,
    graph: bool,
    quiet: bool,
    /// Where runs are kept; `None` for memory.
    db: Option<PathBuf>,
    resume: Option<RunId>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        path: None,
        threshold: DEFAULT_THRESHOLD,
        write: None,
        graph: false,
        quiet: false,
        db: Some(PathBuf::from("code_review.db")),
        resume: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--threshold" => {
                let text = value()?;
                args.threshold = match text.parse::<f64>() {
                    Ok(score) if (0.0..=10.0).contains(&score) => score,
                    _ => {
                        return Err(format!(
                            "--threshold: expected a score from 0 to 10, got {text}"
                        ));
                    }
                };
            }
            "--write" => args.write = Some(value()?),
            "--db" => args.db = Some(PathBuf::from(value()?)),
            "--memory" => args.db = None,
            "--resume" => {
                let id = value()?;
                args.resume = Some(id.parse().map_err(|_| format!("not a run id: {id}"))?);
            }
            "--graph" => args.graph = true,
            "--quiet" => args.quiet = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}\n{USAGE}")),
            path if args.path.is_none() => args.path = Some(path.to_owned()),
            extra => return Err(format!("one file at a time (got {extra} too)\n{USAGE}")),
        }
    }
    Ok(args)
}

/// The run commands (`runs`, `show`, `events`, `resume`, `graph`) of `workflow::cli`, and
/// `serve` of `workflow::http`.
#[derive(clap::Parser)]
#[command(name = "code_review")]
struct Inspect {
    /// Where the runs are kept: an SQLite file, or a `postgres://` URL.
    #[arg(long, global = true, default_value = "code_review.db")]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    #[command(flatten)]
    Runs(workflow::cli::RunsCommand),
    /// Serve the review workflow over HTTP: the API, live events and a web page.
    Serve(workflow::http::ServeArgs),
    /// Join the workers that run submitted reviews (`--db` must be a `postgres://` URL that
    /// every worker and submitter shares): each round's node runs on whichever worker
    /// claims it.
    Worker(workflow::worker::WorkerArgs),
    /// Submit a review to the workers and print its run id.
    Submit {
        /// The Rust file to review (the bundled sample if none).
        path: Option<PathBuf>,
        /// The score to reach, from 0 to 10.
        #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
        threshold: f64,
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
    let result = match inspect.command {
        Command::Runs(command) => {
            let review = Durable::with_shared_store(CodeReview::new(), Arc::clone(&store));
            let workflows: [&dyn workflow::DynDurable; 1] = [&review];
            let mut out = std::io::stdout().lock();
            command
                .execute(&*store, &workflows, &mut out)
                .await
                .map_err(|error| error.to_string())
        }
        Command::Serve(args) => {
            let registry =
                workflow::http::Registry::with_shared_store(store).workflow(CodeReview::new());
            args.serve(registry)
                .await
                .map_err(|error| error.to_string())
        }
        Command::Worker(args) => {
            let worker =
                workflow::worker::Worker::with_shared_store(store).workflow(CodeReview::new());
            args.run(worker).await.map_err(|error| error.to_string())
        }
        Command::Submit { path, threshold } => {
            let (name, source) = match path {
                Some(path) => match std::fs::read_to_string(&path) {
                    Ok(source) => (path.display().to_string(), source),
                    Err(error) => {
                        eprintln!("error: cannot read {}: {error}", path.display());
                        return ExitCode::FAILURE;
                    }
                },
                None => ("sample.rs (bundled)".to_owned(), SAMPLE.to_owned()),
            };
            let durable = Durable::with_shared_store(CodeReview::new(), store);
            durable
                .submit(Review::new(name, source, threshold))
                .await
                .map(|id| println!("{id}"))
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

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    if is_run_command(std::env::args().skip(1)) {
        return runtime.block_on(inspect(<Inspect as clap::Parser>::parse()));
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if args.graph {
        print!("{}", CodeReview::graph().to_mermaid());
        return ExitCode::SUCCESS;
    }
    let (path, source) = match &args.path {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(source) => (path.clone(), source),
            Err(error) => {
                eprintln!("cannot read {path}: {error}");
                return ExitCode::FAILURE;
            }
        },
        None => ("sample.rs (bundled)".to_owned(), SAMPLE.to_owned()),
    };
    let store: Arc<dyn Store> = match &args.db {
        Some(db) => match runtime.block_on(workflow::store::open(&db.to_string_lossy())) {
            Ok(store) => store,
            Err(error) => {
                eprintln!("cannot open {}: {error}", db.display());
                return ExitCode::FAILURE;
            }
        },
        None => Arc::new(MemoryStore::new()),
    };
    let durable = Durable::with_shared_store(CodeReview::new(), store);
    let result = runtime.block_on(async {
        let handle = match args.resume {
            Some(id) => durable.resume(id).await?,
            None => {
                durable
                    .start(Review::new(path, source, args.threshold))
                    .await?
            }
        };
        eprintln!("run {}", handle.id());
        if !args.quiet {
            Progress::stderr(CodeReview::graph())
                .follow(handle.events())
                .await;
        }
        handle.await
    });
    let review = match result {
        Ok(review) => review,
        Err(error) => {
            eprintln!("review failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", analysis::report(&review));
    if let Some(out) = &args.write {
        if let Err(error) = std::fs::write(out, &review.source) {
            eprintln!("cannot write {out}: {error}");
            return ExitCode::FAILURE;
        }
        println!("revised source written to {out}");
    }
    ExitCode::SUCCESS
}
