//! The content pipeline, run with live progress and a summary.
//!
//! ```text
//! cargo run --example content_pipeline
//! cargo run --example content_pipeline -- --topic "Rust for data teams" --slow linkedin
//! cargo run --example content_pipeline -- --flaky research     # watch retries happen
//! cargo run --example content_pipeline -- --fail email         # skipped: the posts still go out
//! cargo run --example content_pipeline -- --fail linkedin      # a failing step fails the run
//! cargo run --example content_pipeline -- --graph              # print the graph as Mermaid
//! ```

mod pipeline;

use std::process::ExitCode;
use std::time::Duration;

use pipeline::{ContentPipeline, Ctx, Topic};
use workflow::Progress;
use workflow::mock::MockLlm;
use workflow::prelude::*;

const USAGE: &str = "usage: content_pipeline [--topic TEXT] [--audience TEXT] [--latency MS] \
[--slow STEP]... [--flaky STEP]... [--fail STEP]... [--graph] [--dot] [--json]";

struct Args {
    topic: String,
    audience: String,
    latency: Duration,
    slow: Vec<String>,
    flaky: Vec<String>,
    fail: Vec<String>,
    graph: Option<&'static str>,
    json: bool,
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
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let graph = ContentPipeline::graph();
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

    // Prompts start with the step's tag, e.g. "[linkedin] ...", so scripts can target a step.
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

    let pipeline = ContentPipeline::new(Ctx { llm });
    let topic = Topic {
        title: args.topic,
        audience: args.audience,
    };
    let handle = pipeline.start(topic);
    eprintln!("run {}", handle.id());
    let events = Progress::stderr(graph).follow(handle.events()).await;
    let result = handle.await;
    eprintln!("\n{}\n", RunSummary::new(graph, &events));

    match result {
        Ok(published) if args.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&published).expect("outputs serialize")
            );
            ExitCode::SUCCESS
        }
        Ok(published) => {
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
            ExitCode::SUCCESS
        }
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
