//! A code-review agent: reviews a Rust source file, revises what can be fixed mechanically,
//! and loops until the score reaches the threshold or five rounds have run.
//!
//! ```text
//! cargo run --example code_review                          # the bundled sample
//! cargo run --example code_review -- src/lib.rs            # any Rust file
//! cargo run --example code_review -- --threshold 9.5       # a bar it cannot reach: the bound ends the loop
//! cargo run --example code_review -- --write revised.rs    # keep the revised source
//! cargo run --example code_review -- --graph               # the state graph as Mermaid
//! ```

mod analysis;
mod review;

use std::process::ExitCode;

use analysis::{DEFAULT_THRESHOLD, Review, SAMPLE};
use review::CodeReview;
use workflow::Progress;

const USAGE: &str =
    "usage: code_review [PATH] [--threshold SCORE] [--write PATH] [--graph] [--quiet]";

struct Args {
    path: Option<String>,
    threshold: f64,
    write: Option<String>,
    graph: bool,
    quiet: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        path: None,
        threshold: DEFAULT_THRESHOLD,
        write: None,
        graph: false,
        quiet: false,
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

fn main() -> ExitCode {
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
    let result = runtime.block_on(async {
        let handle = CodeReview::new().start(Review::new(path, source, args.threshold));
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
