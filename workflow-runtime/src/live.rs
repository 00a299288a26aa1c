//! The live terminal view of a run (feature `progress`): a bar for the steps done out of
//! the total, under it one spinner per running step with its elapsed time and, while it
//! waits to retry, its attempt and the error. Finished steps, retries, skips and fallbacks
//! are printed above as permanent lines, so the scrollback tells the whole story.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, EventKind, EventStream};
use crate::graph::Graph;
use crate::report::human;

const TICK: Duration = Duration::from_millis(100);

/// The bars of one run.
pub(crate) struct Live {
    multi: MultiProgress,
    overall: ProgressBar,
    /// The spinner of each running step, by node (nested nodes as `outer/inner`).
    running: HashMap<String, ProgressBar>,
    spinner_style: ProgressStyle,
}

impl Live {
    /// A view drawn to `target` (standard error, or hidden in tests).
    pub(crate) fn new(graph: &'static Graph, target: ProgressDrawTarget) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        // A state graph may run a node many times: count steps, not nodes out of a total.
        let overall = if graph.state_graph().is_some() {
            ProgressBar::new_spinner().with_style(style(
                "{spinner:.cyan} {prefix:.bold} {pos} steps done {elapsed:>4}",
            ))
        } else {
            ProgressBar::new(graph.nodes.len() as u64).with_style(style(
                "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} steps {elapsed:>4}",
            ))
        };
        overall.set_prefix(graph.name);
        let overall = multi.add(overall);
        overall.enable_steady_tick(TICK);
        Self {
            multi,
            overall,
            running: HashMap::new(),
            spinner_style: style("  {spinner:.green} {prefix:<24} {secs:>6} {msg}").with_key(
                "secs",
                |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{:.1}s", state.elapsed().as_secs_f64());
                },
            ),
        }
    }

    /// Draws every event of the run until it ends; returns the events.
    pub(crate) async fn follow(mut self, mut events: EventStream) -> Vec<Event> {
        let mut seen = Vec::new();
        while let Some(event) = events.next().await {
            self.show(&event.kind, "");
            seen.push(event);
        }
        for (_, bar) in self.running.drain() {
            bar.finish_and_clear();
        }
        self.overall.finish();
        seen
    }

    /// Updates the view for one event; `scope` names the node whose subworkflow it comes
    /// from (`outer/`), or is empty.
    pub(crate) fn show(&mut self, kind: &EventKind, scope: &str) {
        match kind {
            EventKind::StepStarted { node, attempt } => {
                let key = format!("{scope}{node}");
                let bar = self.running.entry(key.clone()).or_insert_with(|| {
                    let bar = ProgressBar::new_spinner().with_style(self.spinner_style.clone());
                    bar.set_prefix(key);
                    let bar = self.multi.add(bar);
                    bar.enable_steady_tick(TICK);
                    bar
                });
                if *attempt > 1 {
                    bar.set_message(format!("attempt {attempt}"));
                }
            }
            EventKind::StepRetrying {
                node,
                attempt,
                error,
                delay,
            } => {
                let key = format!("{scope}{node}");
                self.print(format!(
                    "  ! {key} attempt {attempt} failed: {error}; retrying in {}",
                    human(*delay)
                ));
                if let Some(bar) = self.running.get(&key) {
                    bar.set_message(format!(
                        "attempt {} in {} ({})",
                        attempt + 1,
                        human(*delay),
                        shorten(error, 60)
                    ));
                }
            }
            EventKind::StepSucceeded { node, duration, .. } => {
                let key = format!("{scope}{node}");
                self.finish(&key);
                self.print(format!("  ✓ {key:<24} {:>9}", human(*duration)));
                if scope.is_empty() {
                    self.overall.inc(1);
                }
            }
            EventKind::StepFailed { node, error, .. } => {
                let key = format!("{scope}{node}");
                self.finish(&key);
                self.print(format!("  ✗ {key} failed: {error}"));
            }
            EventKind::StepSkipped { node, cause } => {
                let key = format!("{scope}{node}");
                let why = if node == cause {
                    "its failure policy skips it".to_owned()
                } else {
                    format!("{cause} was skipped")
                };
                self.print(format!("  - {key} skipped ({why})"));
                if scope.is_empty() {
                    self.overall.inc(1);
                }
            }
            EventKind::FallbackUsed { node, step } => {
                let key = format!("{scope}{node}");
                if let Some(step) = step {
                    self.print(format!("  ↩ {key}: running its fallback step {step}"));
                } else {
                    self.print(format!("  ↩ {key}: using its fallback value"));
                    if scope.is_empty() {
                        self.overall.inc(1);
                    }
                }
            }
            EventKind::Routed { node, arm, to } => {
                self.print(format!("    {scope}{node} -> {to} ({arm})"));
            }
            EventKind::LoopBoundHit { node, max, arm, to } => self.print(format!(
                "    {scope}{node} -> {to}: loop bound hit after {max} rounds ({arm} would loop again)"
            )),
            EventKind::Nested { node, inner } => {
                let scope = format!("{scope}{node}/");
                self.show(inner, &scope);
            }
            EventKind::RunFinished { duration } if scope.is_empty() => {
                self.print(format!("run finished in {}", human(*duration)));
            }
            EventKind::RunFailed { node, error, .. } if scope.is_empty() => {
                if node.is_empty() {
                    self.print(format!("run failed: {error}"));
                } else {
                    self.print(format!("run failed at {node}: {error}"));
                }
            }
            EventKind::RunCancelled { .. } if scope.is_empty() => {
                self.print("run cancelled".to_owned());
            }
            _ => self.show_durable(kind, scope),
        }
    }

    /// The events of durable runs: resumes, pauses, answers, cache hits.
    fn show_durable(&mut self, kind: &EventKind, scope: &str) {
        match kind {
            EventKind::RunResumed { restored, .. } if scope.is_empty() => {
                self.print(format!(
                    "run resumed: {restored} nodes restored from checkpoints"
                ));
                self.overall.inc(u64::from(*restored));
            }
            EventKind::RunWaiting { node, .. } if scope.is_empty() => {
                self.print(format!("  ‖ {node}: waiting for an answer"));
            }
            EventKind::Answered { node } | EventKind::CacheHit { node } => {
                let how = if matches!(kind, EventKind::Answered { .. }) {
                    "answered"
                } else {
                    "cached"
                };
                self.print(format!("  ✓ {scope}{node:<24} {how:>9}"));
                if scope.is_empty() {
                    self.overall.inc(1);
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self, key: &str) {
        if let Some(bar) = self.running.remove(key) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }

    fn print(&self, line: String) {
        // Progress output is best effort: a closed terminal must not fail the run.
        let _ = self.multi.println(line);
    }

    /// The steps running now, by name, with their spinner's message (for tests).
    #[cfg(test)]
    fn running(&self) -> Vec<(String, String)> {
        let mut running: Vec<(String, String)> = self
            .running
            .iter()
            .map(|(key, bar)| (key.clone(), bar.message()))
            .collect();
        running.sort();
        running
    }
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind as K;

    fn started(node: &'static str, attempt: u32) -> K {
        K::StepStarted {
            node: node.into(),
            attempt,
        }
    }

    #[test]
    fn spinners_follow_the_running_steps_and_the_bar_counts_steps_done() {
        use crate::graph::{NodeDef, Shape, Source};
        use crate::policy::{OnFailure, Policy};

        const fn node(name: &'static str) -> NodeDef {
            NodeDef {
                name,
                step: name,
                output_type: "u32",
                inputs: &[],
                deps: &[],
                dependents: &[],
                policy: Policy::DEFAULT,
                on_failure: OnFailure::Fail,
                optional: &[],
                subgraph: None,
                pause: false,
                step_id: name,
                version: 1,
            }
        }
        static GRAPH: Graph = Graph {
            name: "Three",
            doc: "",
            inputs: &[],
            nodes: &[node("a"), node("b"), node("one")],
            output: Source::Input(0),
            output_type: "u32",
            shape: Shape::Dataflow,
            costs: &[],
        };
        let graph = &GRAPH;
        let mut live = Live::new(graph, ProgressDrawTarget::hidden());
        live.show(&started("a", 1), "");
        live.show(&started("b", 1), "");
        assert_eq!(
            live.running(),
            [("a".into(), String::new()), ("b".into(), String::new())]
        );
        live.show(
            &K::StepRetrying {
                node: "a".into(),
                attempt: 1,
                error: "503".into(),
                delay: Duration::from_millis(250),
            },
            "",
        );
        assert_eq!(live.running()[0].1, "attempt 2 in 250ms (503)");
        live.show(
            &K::StepSucceeded {
                node: "b".into(),
                attempt: 1,
                duration: Duration::from_millis(5),
            },
            "",
        );
        assert_eq!(live.overall.position(), 1);
        assert_eq!(live.running().len(), 1);
        live.show(&started("a", 2), "");
        assert_eq!(live.running()[0].1, "attempt 2");
        live.show(
            &K::Nested {
                node: "a".into(),
                inner: Box::new(started("inner", 1)),
            },
            "",
        );
        assert_eq!(live.running()[1].0, "a/inner");
        live.show(
            &K::StepSkipped {
                node: "one".into(),
                cause: "one".into(),
            },
            "",
        );
        assert_eq!(live.overall.position(), 2);
        assert_eq!(live.overall.length(), Some(3));
    }
}
