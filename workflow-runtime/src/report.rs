//! Reading a run's events for people: live progress lines while it runs, and a summary
//! (each step's attempts, duration and outcome; wall time against the critical path) once
//! it has ended.

use std::fmt;
use std::io::Write;
use std::time::Duration;

use crate::events::{Event, EventKind, EventStream};
use crate::graph::{Graph, NodeId};

/// Shows a run as it goes, then hands back the events it read.
///
/// [`Progress::stderr`] draws a live view when standard error is a terminal (with the
/// `progress` feature, on by default): a bar for the steps done out of the total, one
/// spinner per running step with its elapsed time, retries as they happen, and a line
/// above the bars for each step that ends. Otherwise, and with [`Progress::new`], it
/// prints one plain line per event, for logs and pipes.
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
    live: bool,
}

impl Progress<std::io::Stderr> {
    /// Progress on standard error: live bars on a terminal, plain lines otherwise.
    pub fn stderr(graph: &'static Graph) -> Self {
        use std::io::IsTerminal as _;
        let live = cfg!(feature = "progress") && std::io::stderr().is_terminal();
        Self {
            live,
            ..Self::new(graph, std::io::stderr())
        }
    }
}

impl<W: Write> Progress<W> {
    /// Plain progress lines written to `out`.
    pub fn new(graph: &'static Graph, out: W) -> Self {
        Self {
            graph,
            out,
            live: false,
        }
    }

    /// Plain lines even on a terminal.
    #[must_use]
    pub fn plain(mut self) -> Self {
        self.live = false;
        self
    }

    /// Whether this shows live bars (rather than plain lines).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Shows every event of the run until it ends; returns the events.
    pub async fn follow(self, events: EventStream) -> Vec<Event> {
        #[cfg(feature = "progress")]
        if self.live {
            let target = indicatif::ProgressDrawTarget::stderr();
            return crate::live::Live::new(self.graph, target)
                .follow(events)
                .await;
        }
        self.lines(events).await
    }

    async fn lines(mut self, mut events: EventStream) -> Vec<Event> {
        let mut seen = Vec::new();
        // A state graph may run a node many times: count steps, not nodes out of a total.
        let total = self
            .graph
            .state_graph()
            .is_none()
            .then_some(self.graph.nodes.len());
        let mut done = 0;
        while let Some(event) = events.next().await {
            if matches!(
                event.kind,
                EventKind::StepSucceeded { .. }
                    | EventKind::StepSkipped { .. }
                    | EventKind::Answered { .. }
                    | EventKind::CacheHit { .. }
                    | EventKind::FallbackUsed { step: None, .. }
            ) {
                done += 1;
            }
            let at = format!("{:>8.3}s", event.at.as_secs_f64());
            let count = match total {
                Some(total) => format!("[{done}/{total}]"),
                None => format!("[{done} done]"),
            };
            // Progress output is best effort: a closed terminal must not fail the run.
            let _ = writeln!(self.out, "{at}  {}", describe(&event.kind, &count));
            seen.push(event);
        }
        let _ = self.out.flush();
        seen
    }
}

/// One progress line (without its time stamp); `count` is the steps-done counter.
fn describe(kind: &EventKind, count: &str) -> String {
    match kind {
        EventKind::RunStarted { workflow } => format!("run of {workflow} started"),
        EventKind::StepStarted { node, attempt: 1 } => format!("> {node}"),
        EventKind::StepStarted { node, attempt } => format!("> {node} (attempt {attempt})"),
        EventKind::StepSucceeded { node, duration, .. } => {
            format!("ok {node:<20} {:>9}  {count}", human(*duration))
        }
        EventKind::StepRetrying {
            node,
            attempt,
            error,
            delay,
        } => format!(
            "!! {node} attempt {attempt} failed: {error}; retrying in {}",
            human(*delay)
        ),
        EventKind::StepFailed { node, error, .. } => format!("FAILED {node}: {error}"),
        EventKind::StepSkipped { node, cause } if node == cause => {
            format!("-- {node} skipped (its failure policy skips it)")
        }
        EventKind::StepSkipped { node, cause } => format!("-- {node} skipped ({cause} was)"),
        EventKind::FallbackUsed { node, step: None } => {
            format!("<- {node}: using its fallback value")
        }
        EventKind::FallbackUsed {
            node,
            step: Some(step),
        } => format!("<- {node}: running its fallback step {step}"),
        EventKind::Routed { node, arm, to } => format!("   {node} -> {to} ({arm})"),
        EventKind::LoopBoundHit { node, max, arm, to } => {
            format!("   {node} -> {to}: loop bound hit after {max} rounds ({arm} would loop again)")
        }
        EventKind::Nested { node, inner } => format!("  [{node}] {}", describe(inner, "")),
        EventKind::RunFinished { duration } => format!("run finished in {}", human(*duration)),
        EventKind::RunFailed { node, error, .. } if node.is_empty() => {
            format!("run failed: {error}")
        }
        EventKind::RunFailed { node, error, .. } => format!("run failed at {node}: {error}"),
        EventKind::RunCancelled { .. } => "run cancelled".to_owned(),
        EventKind::RunResumed { workflow, restored } => {
            format!("run of {workflow} resumed ({restored} nodes restored from checkpoints)")
        }
        EventKind::RunWaiting { node, .. } => format!("|| {node}: waiting for an answer"),
        EventKind::Answered { node } => format!("ok {node:<20} answered  {count}"),
        EventKind::CacheHit { node } => format!("ok {node:<20}    cached  {count}"),
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
    /// It failed for good, and its fallback gave its output.
    Fallback,
    /// It failed for good.
    Failed,
    /// It was skipped: it failed and its policy skips it, or a node it needs was skipped.
    Skipped,
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
    /// From its first attempt's start to its end (retries and backoff included), summed
    /// over every time it ran (a node of a state graph may run many times).
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
    /// scheduler could have achieved with these step durations. (A state graph runs one
    /// node at a time: its chain is every step that ran.)
    pub critical_path: Duration,
    /// The nodes on that chain, in order (for a state graph: in the order they first ran).
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
        let mut started_at = vec![Duration::ZERO; graph.nodes.len()];
        let mut fell_back = vec![false; graph.nodes.len()];
        let mut first_run: Vec<NodeId> = Vec::new();
        let mut wall_time = Duration::ZERO;
        for event in events {
            wall_time = wall_time.max(event.at);
            let Some(id) = event.kind.node().and_then(|name| graph.find(name)) else {
                continue;
            };
            let step = &mut steps[id.0];
            match &event.kind {
                EventKind::StepStarted { attempt, .. } => {
                    if step.attempts == 0 {
                        first_run.push(id);
                    }
                    if *attempt == 1 {
                        started_at[id.0] = event.at;
                    }
                    step.attempts += 1;
                    step.outcome = StepOutcome::Interrupted;
                }
                // A fallback step's success ends the node's one run (the step it replaced
                // already counted up to its failure).
                EventKind::StepSucceeded { .. } if fell_back[id.0] => {
                    step.duration = event.at.saturating_sub(started_at[id.0]);
                    step.outcome = StepOutcome::Fallback;
                }
                EventKind::StepSucceeded { .. } => {
                    step.duration += event.at.saturating_sub(started_at[id.0]);
                    step.outcome = StepOutcome::Succeeded;
                }
                EventKind::FallbackUsed { step: fallback, .. } => {
                    fell_back[id.0] = true;
                    if fallback.is_none() {
                        step.outcome = StepOutcome::Fallback;
                    }
                }
                EventKind::StepSkipped { .. } => step.outcome = StepOutcome::Skipped,
                EventKind::StepFailed { .. } if fell_back[id.0] => {
                    step.duration = event.at.saturating_sub(started_at[id.0]);
                    step.outcome = StepOutcome::Failed;
                }
                EventKind::StepFailed { .. } => {
                    step.duration += event.at.saturating_sub(started_at[id.0]);
                    step.outcome = StepOutcome::Failed;
                }
                _ => {}
            }
        }
        let (critical_path, critical_nodes) = if graph.state_graph().is_some() {
            let total = steps.iter().map(|step| step.duration).sum();
            (
                total,
                first_run.iter().map(|id| graph.node(*id).name).collect(),
            )
        } else {
            critical_path(graph, &steps)
        };
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
                StepOutcome::Fallback => "fallback",
                StepOutcome::Failed => "failed",
                StepOutcome::Skipped => "skipped",
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
