//! What the API answers: workflows, graphs and runs as JSON documents.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::events::{Event, EventKind};
use crate::graph::{Graph, Source, Target};
use crate::run::RunId;
use crate::store::{Checkpoint, Interrupt, RunRecord, RunStatus, StateCheckpoint};

/// A workflow graph for drawing: its nodes, and its edges between node names.
#[derive(Serialize)]
pub(crate) struct GraphView {
    name: &'static str,
    doc: &'static str,
    kind: &'static str,
    mermaid: String,
    dot: String,
    nodes: Vec<NodeView>,
    edges: Vec<EdgeView>,
    /// A state graph's start node.
    start: Option<&'static str>,
}

#[derive(Serialize)]
struct NodeView {
    name: &'static str,
    step: &'static str,
    output_type: &'static str,
    pause: bool,
}

#[derive(Serialize)]
struct EdgeView {
    from: &'static str,
    to: &'static str,
    label: Option<String>,
}

/// `dataflow` or `state_graph`.
pub(crate) fn kind(graph: &Graph) -> &'static str {
    if graph.state_graph().is_some() {
        "state_graph"
    } else {
        "dataflow"
    }
}

impl GraphView {
    pub(crate) fn of(graph: &'static Graph) -> Self {
        let node = |id: crate::graph::NodeId| {
            let def = graph.node(id);
            NodeView {
                name: def.name,
                step: def.step,
                output_type: def.output_type,
                pause: def.pause,
            }
        };
        let (nodes, edges, start) = match graph.state_graph() {
            None => {
                let nodes = graph.topological_order().into_iter().map(node).collect();
                let edges = graph
                    .edges()
                    .filter_map(|edge| match (edge.from, edge.to) {
                        (Source::Node(from), Some(to)) => Some(EdgeView {
                            from: graph.node(from).name,
                            to: graph.node(to).name,
                            label: None,
                        }),
                        _ => None,
                    })
                    .collect();
                (nodes, edges, None)
            }
            Some(def) => {
                let nodes = (0..graph.nodes.len())
                    .map(|i| node(crate::graph::NodeId(i)))
                    .collect();
                let edges = graph
                    .transitions()
                    .map(|transition| EdgeView {
                        from: graph.node(transition.from).name,
                        to: match transition.to {
                            Target::Node(to) => graph.node(to).name,
                            Target::End => "END",
                        },
                        label: match (transition.pattern, transition.bound) {
                            (Some(pattern), _) => Some(pattern.to_owned()),
                            (None, Some(max)) => Some(format!("max {max}")),
                            (None, None) => None,
                        },
                    })
                    .collect();
                (nodes, edges, Some(graph.node(def.start).name))
            }
        };
        Self {
            name: graph.name,
            doc: graph.doc,
            kind: kind(graph),
            mermaid: graph.to_mermaid(),
            dot: graph.to_dot(),
            nodes,
            edges,
            start,
        }
    }
}

/// A run as the list of runs shows it.
#[derive(Serialize)]
pub(crate) struct RunSummaryView {
    id: RunId,
    workflow: String,
    status: RunStatus,
    created_at: i64,
    updated_at: i64,
}

impl From<&RunRecord> for RunSummaryView {
    fn from(record: &RunRecord) -> Self {
        Self {
            id: record.id,
            workflow: record.workflow.clone(),
            status: record.status,
            created_at: record.created_at.0,
            updated_at: record.updated_at.0,
        }
    }
}

/// One attempt of a node, from its events.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct AttemptView {
    attempt: u32,
    started_us: Option<u64>,
    finished_us: Option<u64>,
    /// `running`, `succeeded`, `retrying` or `failed`.
    outcome: &'static str,
    error: Option<String>,
}

/// A node of a run: its status, attempts and output.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct NodeStateView {
    name: &'static str,
    /// `pending`, `running`, `retrying`, `done`, `failed`, `skipped` or `waiting`.
    status: &'static str,
    attempts: Vec<AttemptView>,
    output: Option<Value>,
}

/// A run in full: its record, each node's state, its state graph's state and its pause.
#[derive(Serialize)]
pub(crate) struct RunView {
    id: RunId,
    workflow: String,
    status: RunStatus,
    created_at: i64,
    updated_at: i64,
    input: Value,
    output: Option<Value>,
    error: Option<String>,
    nodes: Vec<NodeStateView>,
    state: Option<Value>,
    interrupt: Option<InterruptView>,
    /// How many events the run has logged so far: the sequence number of the next one.
    next_seq: u64,
}

#[derive(Serialize)]
struct InterruptView {
    node: String,
    request: Value,
    created_at: i64,
}

/// Everything a [`RunView`] is made of.
pub(crate) struct RunParts {
    pub(crate) record: RunRecord,
    pub(crate) checkpoints: Vec<Checkpoint>,
    pub(crate) state: Option<StateCheckpoint>,
    pub(crate) interrupt: Option<Interrupt>,
    /// Every event of the run so far, stored or live, in order.
    pub(crate) events: Vec<Event>,
}

impl RunView {
    /// The view of a run; `graph` is its workflow's, when this server has it.
    pub(crate) fn new(parts: RunParts, graph: Option<&'static Graph>) -> Self {
        let RunParts {
            record,
            checkpoints,
            state,
            interrupt,
            events,
        } = parts;
        let next_seq = events.last().map_or(0, |event| event.seq + 1);
        let nodes = graph.map(|graph| node_states(graph, &checkpoints, &events));
        Self {
            id: record.id,
            workflow: record.workflow,
            status: record.status,
            created_at: record.created_at.0,
            updated_at: record.updated_at.0,
            input: record.input,
            output: record.output,
            error: record.error,
            nodes: nodes.unwrap_or_default(),
            state: state.map(|state| state.state),
            interrupt: interrupt.map(|interrupt| InterruptView {
                node: interrupt.node,
                request: interrupt.request,
                created_at: interrupt.created_at.0,
            }),
            next_seq,
        }
    }
}

fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Each node's state, replayed from the run's events; outputs from its checkpoints.
pub(crate) fn node_states(
    graph: &'static Graph,
    checkpoints: &[Checkpoint],
    events: &[Event],
) -> Vec<NodeStateView> {
    let mut nodes: Vec<NodeStateView> = graph
        .nodes
        .iter()
        .map(|def| NodeStateView {
            name: def.name,
            status: "pending",
            attempts: Vec::new(),
            output: None,
        })
        .collect();
    let index: HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, def)| (def.name, i))
        .collect();
    for event in events {
        let Some(&i) = event.kind.node().and_then(|name| index.get(name)) else {
            continue;
        };
        let node = &mut nodes[i];
        let at = micros(event.at);
        // The attempt an end event closes: the latest one, if it is still open.
        let last = |node: &mut NodeStateView, attempt: u32| {
            if node
                .attempts
                .last()
                .is_none_or(|a| a.attempt != attempt || a.finished_us.is_some())
            {
                node.attempts.push(AttemptView {
                    attempt,
                    started_us: None,
                    finished_us: None,
                    outcome: "running",
                    error: None,
                });
            }
            node.attempts.len() - 1
        };
        match &event.kind {
            EventKind::StepStarted { attempt, .. } => {
                // Each start is an attempt of its own: a state graph's node that runs again
                // in a later round starts over at attempt 1.
                node.attempts.push(AttemptView {
                    attempt: *attempt,
                    started_us: Some(at),
                    finished_us: None,
                    outcome: "running",
                    error: None,
                });
                node.status = "running";
            }
            EventKind::StepSucceeded { attempt, .. } => {
                let a = last(node, *attempt);
                node.attempts[a].finished_us = Some(at);
                node.attempts[a].outcome = "succeeded";
                node.status = "done";
            }
            EventKind::StepRetrying { attempt, error, .. } => {
                let a = last(node, *attempt);
                node.attempts[a].finished_us = Some(at);
                node.attempts[a].outcome = "retrying";
                node.attempts[a].error = Some(error.clone());
                node.status = "retrying";
            }
            EventKind::StepFailed { attempt, error, .. } => {
                let a = last(node, *attempt);
                node.attempts[a].finished_us = Some(at);
                node.attempts[a].outcome = "failed";
                node.attempts[a].error = Some(error.clone());
                node.status = "failed";
            }
            EventKind::StepSkipped { .. } => node.status = "skipped",
            EventKind::CacheHit { .. } | EventKind::Answered { .. } => node.status = "done",
            EventKind::RunWaiting { .. } => node.status = "waiting",
            _ => {}
        }
    }
    for checkpoint in checkpoints {
        if let Some(&i) = index.get(checkpoint.node.as_str()) {
            nodes[i].status = "done";
            nodes[i].output = Some(checkpoint.output.clone());
        }
    }
    nodes
}
