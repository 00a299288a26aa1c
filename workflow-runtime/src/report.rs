//! Reading a run's events for people: live progress lines while it runs, and a summary
//! (each step's attempts, duration and outcome; wall time against the critical path) once
//! it has ended.

use std::fmt;
use std::io::Write;
use std::time::Duration;

use crate::events::{Event, EventKind, EventStream};
use crate::graph::{Graph, NodeId};

/// Prints one line per event as a run goes, then hands back the events it read.
///
/// # Examples
///
/// ```
/// use workflow::prelude::*;
/// use workflow::Progress;
///
/// #[step]
/// fn shout(text: &String) -> String {
///     text.to_uppercase()
/// }
///
/// workflow! {
///     /// Shouts.
///     pub Shout(text: String) -> String {
///         shout(text)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = Shout::new().start("hi".to_owned());
/// let mut lines = Vec::new();
/// let events = Progress::new(Shout::graph(), &mut lines).follow(handle.events()).await;
/// assert_eq!(handle.await.unwrap(), "HI");
/// let summary = RunSummary::new(Shout::graph(), &events);
/// assert_eq!(summary.steps[0].attempts, 1);
/// assert!(String::from_utf8(lines).unwrap().contains("shout"));
/// # }
/// ```
pub struct Progress<W> {
    graph: &'static Graph,
    out: W,
}

impl Progress<std::io::Stderr> {
    /// Progress lines on standard error.
    pub fn stderr(graph: &'static Graph) -> Self {
        Self::new(graph, std::io::stderr())
    }
}

impl<W: Write> Progress<W> {
    /// Progress lines written to `out`.
    pub fn new(graph: &'static Graph, out: W) -> Self {
        Self { graph, out }
    }

    /// Prints every event of the run until it ends; returns the events.
    pub async fn follow(mut self, mut events: EventStream) -> Vec<Event> {
        let mut seen = Vec::new();
        let total = self.graph.nodes.len();
        let mut done = 0;
        while let Some(event) = events.next().await {
            if matches!(event.kind, EventKind::StepSucceeded { .. }) {
                done += 1;
            }
            // Progress output is best effort: a closed terminal must not fail the run.
            let _ = writeln!(self.out, "{}", line(&event, done, total));
            seen.push(event);
        }
        let _ = self.out.flush();
        seen
    }
}

fn line(event: &Event, done: usize, total: usize) -> String {
    let at = format!("{:>8.3}s", event.at.as_secs_f64());
    match &event.kind {
        EventKind::RunStarted { workflow } => format!("{at}  run of {workflow} started"),
        EventKind::StepStarted { node, attempt: 1 } => format!("{at}  > {node}"),
        EventKind::StepStarted { node, attempt } => format!("{at}  > {node} (attempt {attempt})"),
        EventKind::StepSucceeded { node, duration, .. } => {
            format!(
                "{at}  ok {node:<20} {:>9}  [{done}/{total}]",
                human(*duration)
            )
        }
        EventKind::StepRetrying {
            node,
            attempt,
            error,
            delay,
        } => format!(
            "{at}  !! {node} attempt {attempt} failed: {error}; retrying in {}",
            human(*delay)
        ),
        EventKind::StepFailed { node, error, .. } => format!("{at}  FAILED {node}: {error}"),
        EventKind::RunFinished { duration } => {
            format!("{at}  run finished in {}", human(*duration))
        }
        EventKind::RunFailed { node, error, .. } if node.is_empty() => {
            format!("{at}  run failed: {error}")
        }
        EventKind::RunFailed { node, error, .. } => {
            format!("{at}  run failed at {node}: {error}")
        }
        EventKind::RunCancelled { .. } => format!("{at}  run cancelled"),
    }
}

/// Formats a duration for people: `850us`, `412ms`, `1.25s`.
pub fn human(duration: Duration) -> String {
    if duration < Duration::from_millis(1) {
        format!("{}us", duration.as_micros())
    } else if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{:.2}s", duration.as_secs_f64())
    }
}

/// How a node of a finished run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// It produced its output.
    Succeeded,
    /// It failed for good.
    Failed,
    /// It started but did not finish (the run failed or was cancelled meanwhile).
    Interrupted,
    /// It never started.
    NotRun,
}

/// One node's line in a [`RunSummary`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StepSummary {
    /// The node's name.
    pub node: &'static str,
    /// How many attempts started.
    pub attempts: u32,
    /// From its first attempt's start to its end (retries and backoff included).
    pub duration: Duration,
    /// How it ended.
    pub outcome: StepOutcome,
}

/// What a run did, computed from its graph and its events.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    /// The workflow's name.
    pub workflow: &'static str,
    /// One line per node, in declaration order.
    pub steps: Vec<StepSummary>,
    /// The run's wall time.
    pub wall_time: Duration,
    /// The longest chain of dependent steps, by their durations: the least wall time any
    /// scheduler could have achieved with these step durations.
    pub critical_path: Duration,
    /// The nodes on that chain, in order.
    pub critical_nodes: Vec<&'static str>,
}

impl RunSummary {
    /// Summarises a run of `graph` from its events.
    pub fn new(graph: &'static Graph, events: &[Event]) -> Self {
        let mut steps: Vec<StepSummary> = graph
            .nodes
            .iter()
            .map(|node| StepSummary {
                node: node.name,
                attempts: 0,
                duration: Duration::ZERO,
                outcome: StepOutcome::NotRun,
            })
            .collect();
        let mut first_start = vec![Duration::ZERO; graph.nodes.len()];
        let mut wall_time = Duration::ZERO;
        for event in events {
            wall_time = wall_time.max(event.at);
            let Some(id) = event.kind.node().and_then(|name| graph.find(name)) else {
                continue;
            };
            let step = &mut steps[id.0];
            match &event.kind {
                EventKind::StepStarted { .. } => {
                    if step.attempts == 0 {
                        first_start[id.0] = event.at;
                    }
                    step.attempts += 1;
                    step.outcome = StepOutcome::Interrupted;
                }
                EventKind::StepSucceeded { .. } => {
                    step.duration = event.at.saturating_sub(first_start[id.0]);
                    step.outcome = StepOutcome::Succeeded;
                }
                EventKind::StepFailed { .. } => {
                    step.duration = event.at.saturating_sub(first_start[id.0]);
                    step.outcome = StepOutcome::Failed;
                }
                _ => {}
            }
        }
        let (critical_path, critical_nodes) = critical_path(graph, &steps);
        Self {
            workflow: graph.name,
            steps,
            wall_time,
            critical_path,
            critical_nodes,
        }
    }
}

/// The longest path through the graph weighted by step durations.
fn critical_path(graph: &Graph, steps: &[StepSummary]) -> (Duration, Vec<&'static str>) {
    let mut finish = vec![Duration::ZERO; graph.nodes.len()];
    let mut via: Vec<Option<NodeId>> = vec![None; graph.nodes.len()];
    for id in graph.topological_order() {
        let node = graph.node(id);
        let before = node.deps.iter().copied().max_by_key(|dep| finish[dep.0]);
        via[id.0] = before;
        finish[id.0] = before.map_or(Duration::ZERO, |dep| finish[dep.0]) + steps[id.0].duration;
    }
    let Some(last) = (0..graph.nodes.len()).max_by_key(|&i| finish[i]) else {
        return (Duration::ZERO, Vec::new());
    };
    let mut path = vec![graph.nodes[last].name];
    let mut at = via[last];
    while let Some(id) = at {
        path.push(graph.node(id).name);
        at = via[id.0];
    }
    path.reverse();
    (finish[last], path)
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .steps
            .iter()
            .map(|s| s.node.len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(
            f,
            "{:<width$}  {:>8}  {:>9}  outcome",
            "step", "attempts", "duration"
        )?;
        for step in &self.steps {
            let outcome = match step.outcome {
                StepOutcome::Succeeded => "succeeded",
                StepOutcome::Failed => "failed",
                StepOutcome::Interrupted => "interrupted",
                StepOutcome::NotRun => "not run",
            };
            writeln!(
                f,
                "{:<width$}  {:>8}  {:>9}  {outcome}",
                step.node,
                step.attempts,
                human(step.duration)
            )?;
        }
        write!(
            f,
            "{}: wall time {}, critical path {} ({})",
            self.workflow,
            human(self.wall_time),
            human(self.critical_path),
            self.critical_nodes.join(" -> ")
        )
    }
}
