//! A command line for stored runs, for a program to mount in its own clap parser.
//!
//! [`RunsCommand`] is a set of clap subcommands: `runs` lists the stored runs, `show` prints
//! one (its nodes, outputs, state and the input it waits for), `events` prints its event
//! log as JSON lines, `resume` takes up a run whose process died, and `graph` prints a
//! workflow's graph. [`RunsCommand::execute`] carries one out against a [`Store`] and the
//! workflows the program can run ([`DynDurable`]), and writes what it prints to any
//! [`io::Write`]. Exit codes are the program's business: `execute` returns a [`CliError`].
//!
//! # Examples
//!
//! ```
//! use clap::Parser;
//! use workflow::cli::RunsCommand;
//! use workflow::prelude::*;
//! use workflow::store::MemoryStore;
//!
//! #[step]
//! fn double(x: u32) -> u32 {
//!     x * 2
//! }
//!
//! workflow! {
//!     /// Doubles a number.
//!     pub Double(x: u32) -> u32 {
//!         double(x)
//!     }
//! }
//!
//! /// The program's own command line, with the run commands beside its own.
//! #[derive(clap::Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Command,
//! }
//!
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     /// Double a number, durably.
//!     Double { x: u32 },
//!     #[command(flatten)]
//!     Runs(RunsCommand),
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let durable = Durable::new(Double::new(), MemoryStore::new());
//! durable.run(21).await?;
//! // A real program parses `std::env::args()` with `Cli::parse()`.
//! let cli = Cli::try_parse_from(["prog", "runs", "--limit", "5"])?;
//! let mut out = Vec::new();
//! match cli.command {
//!     Command::Double { x } => println!("{}", durable.run(x).await?),
//!     Command::Runs(command) => {
//!         command.execute(&**durable.store(), &[&durable], &mut out).await?;
//!     }
//! }
//! let text = String::from_utf8(out)?;
//! assert!(text.starts_with("ID "));
//! let run: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
//! assert_eq!(run[1..3], ["Double", "succeeded"]); // after the id; then the times
//! # Ok(())
//! # }
//! ```

use std::fmt::{self, Write as _};
use std::io;
use std::time::Duration;

use crate::durable::DynDurable;
use crate::graph::Graph;
use crate::report::human;
use crate::run::{RunError, RunId};
use crate::store::{
    Checkpoint, Interrupt, RunRecord, StateCheckpoint, Store, StoreError, Timestamp,
};

/// The commands that inspect and drive stored runs, as clap subcommands.
///
/// Mount them in a program's own parser with `#[command(flatten)]` on a variant of its
/// `#[derive(clap::Subcommand)]` enum (see the [module docs](self)), or give them a
/// subcommand of their own; then call [`RunsCommand::execute`].
///
/// ```text
/// runs [--limit N]                 list the runs, newest first (20 unless told)
/// show <ID> [--json]               one run: status, input, output, nodes, state, pause
/// events <ID> [--from SEQ]         its events, one JSON object per line
/// resume <ID>                      take up a run that did not end, print its output
/// graph [WORKFLOW] [--format F]    a workflow's graph: mermaid (default), dot, json
/// ```
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum RunsCommand {
    /// List the stored runs, newest first.
    Runs {
        /// How many runs to list at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show a run: its status, nodes, outputs and pause.
    ///
    /// Prints the run's status, times, input and output or error; for a dataflow workflow
    /// each node's progress (attempts and time taken) and output, for a state graph its
    /// latest state; and, for a paused run, the input it waits for.
    Show {
        /// The run's id.
        id: RunId,
        /// Print one JSON document (record, checkpoints, state, interrupt) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a run's events, one JSON object per line.
    Events {
        /// The run's id.
        id: RunId,
        /// The sequence number of the first event to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
    /// Resume a run that did not end (its process died) and print its output as JSON.
    Resume {
        /// The run's id.
        id: RunId,
    },
    /// Print a workflow's graph.
    Graph {
        /// The workflow's name; it may be left out when the program has one workflow.
        workflow: Option<String>,
        /// How to render the graph.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
}

/// How the `graph` command renders a graph: [`Graph::to_mermaid`], [`Graph::to_dot`], or
/// the graph's `Serialize` form as JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
    /// The graph's structure, as JSON.
    Json,
}

impl RunsCommand {
    /// Carries out the command: reads runs from `store`, resumes them and renders graphs
    /// with `workflows` (the workflows this program can run, found by their names), and
    /// writes what the command prints to `out`.
    ///
    /// `resume` looks the run up in `store` and resumes it with the workflow it belongs
    /// to, through that workflow's own store: give each workflow the same store (see
    /// [`Durable::with_shared_store`](crate::Durable::with_shared_store)).
    ///
    /// # Errors
    ///
    /// [`CliError::Store`] for an unknown run id or a failing store;
    /// [`CliError::UnknownWorkflow`] when a workflow named on the command line, or the
    /// workflow of a run to resume, is not among `workflows`;
    /// [`CliError::WorkflowNotNamed`] for `graph` without a name when there is not exactly
    /// one workflow; [`CliError::Run`] when a run cannot resume or fails;
    /// [`CliError::Io`] when writing to `out` fails.
    ///
    /// # Panics
    ///
    /// `resume`, outside a tokio runtime.
    pub async fn execute<W: io::Write + ?Sized>(
        &self,
        store: &dyn Store,
        workflows: &[&dyn DynDurable],
        out: &mut W,
    ) -> Result<(), CliError> {
        match self {
            Self::Runs { limit } => {
                let runs = store.runs(*limit).await?;
                out.write_all(runs_table(&runs).as_bytes())?;
            }
            Self::Show { id, json } => {
                let run = StoredRun::load(store, *id).await?;
                if *json {
                    serde_json::to_writer_pretty(&mut *out, &run).map_err(io::Error::from)?;
                    out.write_all(b"\n")?;
                } else {
                    let graph = workflows
                        .iter()
                        .map(|workflow| workflow.graph())
                        .find(|graph| graph.name == run.record.workflow);
                    out.write_all(run.text(graph).as_bytes())?;
                }
            }
            Self::Events { id, from } => {
                for event in store.events(*id, *from).await? {
                    serde_json::to_writer(&mut *out, &event).map_err(io::Error::from)?;
                    out.write_all(b"\n")?;
                }
            }
            Self::Resume { id } => {
                let record = store.run(*id).await?;
                let workflow = find(workflows, &record.workflow)?;
                let output = workflow.resume_json(*id).await?;
                writeln!(out, "{output:#}")?;
            }
            Self::Graph { workflow, format } => {
                let graph = match workflow {
                    Some(name) => find(workflows, name)?.graph(),
                    None => match workflows {
                        [only] => only.graph(),
                        _ => {
                            return Err(CliError::WorkflowNotNamed {
                                known: names(workflows),
                            });
                        }
                    },
                };
                match format {
                    GraphFormat::Mermaid => out.write_all(graph.to_mermaid().as_bytes())?,
                    GraphFormat::Dot => out.write_all(graph.to_dot().as_bytes())?,
                    GraphFormat::Json => {
                        serde_json::to_writer_pretty(&mut *out, graph).map_err(io::Error::from)?;
                        out.write_all(b"\n")?;
                    }
                }
            }
        }
        out.flush()?;
        Ok(())
    }
}

/// Why a [`RunsCommand`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CliError {
    /// The store has no run with the id given, or failed.
    Store(StoreError),
    /// The run could not resume, or it failed.
    Run(RunError),
    /// The program has no workflow of this name.
    UnknownWorkflow {
        /// The name asked for (on the command line, or stored with the run).
        name: String,
        /// The workflows the program has.
        known: Vec<String>,
    },
    /// `graph` names no workflow, and the program does not have exactly one.
    WorkflowNotNamed {
        /// The workflows the program has.
        known: Vec<String>,
    },
    /// Writing the output failed.
    Io(io::Error),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(error) => error.fmt(f),
            Self::Run(error) => error.fmt(f),
            Self::UnknownWorkflow { name, known } => {
                write!(f, "unknown workflow `{name}`; {}", Known(known))
            }
            Self::WorkflowNotNamed { known } if known.is_empty() => {
                write!(f, "{}", Known(known))
            }
            Self::WorkflowNotNamed { known } => {
                write!(f, "name a workflow: {}", Known(known))
            }
            Self::Io(error) => write!(f, "cannot write the output: {error}"),
        }
    }
}

impl std::error::Error for CliError {
    // `Store` and `Run` display as the error they wrap, so their source is its source:
    // a reporter that walks the chain prints each message once.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(error) => error.source(),
            Self::Run(error) => error.source(),
            Self::Io(error) => Some(error),
            Self::UnknownWorkflow { .. } | Self::WorkflowNotNamed { .. } => None,
        }
    }
}

impl From<StoreError> for CliError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<RunError> for CliError {
    fn from(error: RunError) -> Self {
        Self::Run(error)
    }
}

impl From<io::Error> for CliError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// Displays the workflows a program has: "this program has `A`, `B`".
struct Known<'a>(&'a [String]);

impl fmt::Display for Known<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("this program has no workflows");
        }
        f.write_str("this program has ")?;
        for (i, name) in self.0.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}`{name}`")?;
        }
        Ok(())
    }
}

fn names(workflows: &[&dyn DynDurable]) -> Vec<String> {
    workflows
        .iter()
        .map(|workflow| workflow.graph().name.to_owned())
        .collect()
}

fn find<'w>(workflows: &[&'w dyn DynDurable], name: &str) -> Result<&'w dyn DynDurable, CliError> {
    workflows
        .iter()
        .copied()
        .find(|workflow| workflow.graph().name == name)
        .ok_or_else(|| CliError::UnknownWorkflow {
            name: name.to_owned(),
            known: names(workflows),
        })
}

/// Everything a store keeps about a run but its events: what `show` prints.
#[derive(serde::Serialize)]
struct StoredRun {
    record: RunRecord,
    checkpoints: Vec<Checkpoint>,
    state: Option<StateCheckpoint>,
    interrupt: Option<Interrupt>,
}

impl StoredRun {
    async fn load(store: &dyn Store, id: RunId) -> Result<Self, StoreError> {
        Ok(Self {
            record: store.run(id).await?,
            checkpoints: store.checkpoints(id).await?,
            state: store.state(id).await?,
            interrupt: store.interrupt(id).await?,
        })
    }

    /// The text view; `graph` is the run's workflow when this program has it, which lists
    /// the nodes that have not completed too.
    fn text(&self, graph: Option<&Graph>) -> String {
        let record = &self.record;
        let mut out = String::new();
        let mut fields = vec![
            ("run", record.id.to_string()),
            ("workflow", record.workflow.clone()),
            ("status", record.status.to_string()),
            ("created", format!("{} UTC", utc(record.created_at))),
            ("updated", format!("{} UTC", utc(record.updated_at))),
            ("input", format!("{:#}", record.input)),
        ];
        if let Some(output) = &record.output {
            fields.push(("output", format!("{output:#}")));
        }
        if let Some(error) = &record.error {
            fields.push(("error", error.clone()));
        }
        push_fields(&mut out, "", &fields);

        let state_graph = graph.map_or(self.state.is_some(), |graph| graph.state_graph().is_some());
        if state_graph {
            self.state_text(&mut out);
        } else {
            self.nodes_text(&mut out, graph);
        }
        if let Some(interrupt) = &self.interrupt {
            out.push_str("\nwaiting for input\n");
            let fields = [
                ("node", interrupt.node.clone()),
                ("since", format!("{} UTC", utc(interrupt.created_at))),
                ("request", format!("{:#}", interrupt.request)),
            ];
            push_fields(&mut out, "  ", &fields);
        }
        out
    }

    /// A dataflow run's nodes, in graph order (then any checkpoint of a node the graph
    /// does not have), and the outputs of those that completed.
    fn nodes_text(&self, out: &mut String, graph: Option<&Graph>) {
        let mut names: Vec<&str> = graph
            .map(|graph| graph.nodes.iter().map(|node| node.name).collect())
            .unwrap_or_default();
        for checkpoint in &self.checkpoints {
            if !names.contains(&checkpoint.node.as_str()) {
                names.push(&checkpoint.node);
            }
        }
        if names.is_empty() {
            return;
        }
        let checkpoint = |name: &str| self.checkpoints.iter().find(|c| c.node == name);
        let waiting = self
            .interrupt
            .as_ref()
            .map(|interrupt| interrupt.node.as_str());
        let not_done = if self.record.status.is_final() {
            "not completed"
        } else {
            "pending"
        };
        let rows: Vec<Vec<String>> = names
            .iter()
            .map(|&name| {
                if let Some(done) = checkpoint(name) {
                    let took = human(between(done.started_at, done.finished_at));
                    return vec![
                        "✓".to_owned(),
                        name.to_owned(),
                        attempts(done.attempts),
                        took,
                    ];
                }
                let what = if waiting == Some(name) {
                    "waiting for input"
                } else {
                    not_done
                };
                vec!["·".to_owned(), name.to_owned(), what.to_owned()]
            })
            .collect();
        out.push_str("\nnodes\n");
        out.push_str(&table(&rows, "  "));
        let outputs: Vec<_> = names.iter().filter_map(|&name| checkpoint(name)).collect();
        if outputs.is_empty() {
            return;
        }
        out.push_str("\noutputs\n");
        for done in outputs {
            let value = format!("{:#}", done.output).replace('\n', "\n  ");
            let _ = writeln!(out, "  {} = {value}", done.node);
        }
    }

    /// A state graph's latest state.
    fn state_text(&self, out: &mut String) {
        out.push_str("\nstate\n");
        let Some(state) = &self.state else {
            out.push_str("  no node has completed yet\n");
            return;
        };
        let last = format!(
            "{}  {}  {}",
            state.node,
            attempts(state.attempts),
            human(between(state.started_at, state.finished_at))
        );
        let fields = [
            ("step", state.step.to_string()),
            ("last", last),
            (
                "next",
                state.next.clone().unwrap_or_else(|| "END".to_owned()),
            ),
            ("state", format!("{:#}", state.state)),
        ];
        push_fields(out, "  ", &fields);
    }
}

/// The `runs` listing: a header and one row per run, or "no runs".
fn runs_table(runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return "no runs\n".to_owned();
    }
    let header = ["ID", "WORKFLOW", "STATUS", "CREATED (UTC)", "UPDATED (UTC)"];
    let rows: Vec<Vec<String>> = std::iter::once(header.map(str::to_owned).to_vec())
        .chain(runs.iter().map(|run| {
            vec![
                run.id.to_string(),
                run.workflow.clone(),
                run.status.to_string(),
                utc(run.created_at),
                utc(run.updated_at),
            ]
        }))
        .collect();
    table(&rows, "")
}

/// Lines of `label  value`, labels padded to one width, each line of a multi-line value
/// indented under the first.
fn push_fields(out: &mut String, indent: &str, fields: &[(&str, String)]) {
    let width = fields
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0);
    let continuation = format!("\n{indent}{:width$}  ", "");
    for (label, value) in fields {
        let value = value.replace('\n', &continuation);
        let _ = writeln!(out, "{indent}{label:width$}  {value}");
    }
}

/// Aligns `rows` in columns two spaces apart. A row may be shorter than others: its last
/// cell is not padded, nor counted in its column's width, so no line ends in spaces and a
/// long last cell does not push the other rows' columns apart.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter(|row| column + 1 < row.len())
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (column, cell) in row.iter().enumerate() {
            if column > 0 {
                line.push_str("  ");
            }
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:width$}", width = widths[column]);
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn attempts(n: u32) -> String {
    if n == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{n} attempts")
    }
}

fn between(start: Timestamp, end: Timestamp) -> Duration {
    Duration::from_micros(u64::try_from(end.0 - start.0).unwrap_or(0))
}

/// `YYYY-MM-DD HH:MM:SS`, in UTC.
fn utc(at: Timestamp) -> String {
    let seconds = at.0.div_euclid(1_000_000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let time = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

/// The (proleptic Gregorian) date `days` after 1970-01-01: Howard Hinnant's
/// `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>), which
/// counts in 400-year eras of 146 097 days starting on March 1st, so that the leap day
/// ends a year.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let from_era_start = days + 719_468; // days since 0000-03-01
    let era = from_era_start.div_euclid(146_097);
    let day_of_era = from_era_start.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11], 0 is March
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> String {
        utc(Timestamp(seconds * 1_000_000))
    }

    #[test]
    fn timestamps_print_as_utc_dates() {
        assert_eq!(at(0), "1970-01-01 00:00:00");
        assert_eq!(at(-1), "1969-12-31 23:59:59");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(at(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(at(4_107_542_399), "2100-02-28 23:59:59");
        assert_eq!(at(4_107_542_400), "2100-03-01 00:00:00");
        assert_eq!(utc(Timestamp(1_999_999)), "1970-01-01 00:00:01");
    }

    #[test]
    fn tables_align_ragged_rows_without_trailing_spaces() {
        let rows = [
            vec!["✓".to_owned(), "a".to_owned(), "1 attempt".to_owned()],
            vec!["·".to_owned(), "longer".to_owned(), "pending".to_owned()],
            vec![
                "·".to_owned(),
                "b".to_owned(),
                "waiting for input".to_owned(),
                "x".to_owned(),
            ],
            vec!["·".to_owned(), "c".to_owned()],
        ];
        assert_eq!(
            table(&rows, "  "),
            "  ✓  a       1 attempt\n  ·  longer  pending\n  ·  b       waiting for input  x\n  ·  c\n"
        );
    }

    #[test]
    fn known_workflows_are_listed_in_messages() {
        let error = CliError::UnknownWorkflow {
            name: "X".to_owned(),
            known: vec!["A".to_owned(), "B".to_owned()],
        };
        assert_eq!(
            error.to_string(),
            "unknown workflow `X`; this program has `A`, `B`"
        );
        let error = CliError::WorkflowNotNamed { known: Vec::new() };
        assert_eq!(error.to_string(), "this program has no workflows");
    }
}
