//! The static description of a compiled workflow: its inputs, nodes and edges, and their
//! renderings as Mermaid and Graphviz DOT.
//!
//! `workflow!` generates one [`Graph`] per workflow as a `static`; the scheduler runs from
//! it, and tools (progress display, HTTP service, docs) read it.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::policy::{OnFailure, Policy};

/// The index of a node in its workflow's [`Graph::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct NodeId(pub usize);

impl NodeId {
    /// The node's index in [`Graph::nodes`].
    pub const fn index(self) -> usize {
        self.0
    }
}

/// Where a node's argument comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The workflow input with this index in [`Graph::inputs`].
    Input(usize),
    /// The output of this node.
    Node(NodeId),
}

/// A named, typed input of a workflow.
#[derive(Debug, serde::Serialize)]
pub struct InputDef {
    /// The input's name, as declared in `workflow!`.
    pub name: &'static str,
    /// Its type, as written.
    pub ty: &'static str,
}

/// One node of a workflow: a call of a step, wired to its arguments.
#[derive(Debug, serde::Serialize)]
pub struct NodeDef {
    /// The node's name (its binding in `workflow!`).
    pub name: &'static str,
    /// The name of the step it calls.
    pub step: &'static str,
    /// The step's output type, as written in its signature.
    pub output_type: &'static str,
    /// The node's arguments, in order.
    pub inputs: &'static [Source],
    /// The distinct nodes this one waits for.
    pub deps: &'static [NodeId],
    /// The nodes that wait for this one.
    pub dependents: &'static [NodeId],
    /// The node's policy: its step's, with what `#[node(...)]` overrides.
    pub policy: Policy,
    /// What happens when the node fails for good.
    pub on_failure: OnFailure,
    /// The nodes this one reads with `.ok()` only: it runs even when they were skipped
    /// (and gets `None` for them).
    pub optional: &'static [NodeId],
    /// When the node runs a workflow of its own (a subworkflow), that workflow's graph.
    pub subgraph: Option<&'static Graph>,
    /// Whether the node is a pause: its step asks for outside input (see
    /// [`Pause`](crate::Pause)) and the run waits for the answer.
    pub pause: bool,
    /// The step's identity ([`Step::ID`](crate::Step::ID)), which its cached outputs are
    /// kept under.
    pub step_id: &'static str,
    /// The step's version ([`Step::VERSION`](crate::Step::VERSION)).
    pub version: u32,
}

/// What kind of workflow a [`Graph`] describes, and for a state graph, how it moves from
/// node to node.
#[derive(Debug, serde::Serialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum Shape {
    /// A dataflow workflow: each node starts as soon as its inputs exist; the edges are
    /// the nodes' [`inputs`](NodeDef::inputs).
    Dataflow,
    /// A state graph: one node at a time over a shared state, from the start node along
    /// edges and routes until `END`.
    StateGraph(StateGraphDef),
}

/// How a state graph moves from node to node.
#[derive(Debug, serde::Serialize)]
pub struct StateGraphDef {
    /// The state's type, as written.
    pub state_type: &'static str,
    /// The node a run starts at.
    pub start: NodeId,
    /// Where each node goes on, indexed like [`Graph::nodes`].
    pub next: &'static [Next],
}

/// Where a node of a state graph goes on once it has run.
#[derive(Debug, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Next {
    /// Always to the same place (`a -> b`).
    Goto {
        /// Where.
        target: Target,
    },
    /// Where the `match` on the node's return value says (`a => match { ... }`).
    Route {
        /// The arms, in the order written.
        arms: &'static [Arm],
        /// The loop bound, if the route carries one (`} max 5 => END`).
        bound: Option<Bound>,
    },
}

/// A node of a state graph, or its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// This node.
    Node(NodeId),
    /// `END`: the run finishes with the state as it is.
    End,
}

/// One arm of a route.
#[derive(Debug, serde::Serialize)]
pub struct Arm {
    /// The arm's pattern (and guard), as written: the label of its edge.
    pub pattern: &'static str,
    /// Where the arm leads.
    pub target: Target,
    /// Whether the arm leads back to its own route (it starts another round of a loop);
    /// the route's bound applies to such arms only.
    pub loops: bool,
}

/// A route's loop bound: how many rounds the route may run, and where the run goes when
/// the last round would loop again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Bound {
    /// The most times the route's node runs in one run. When it runs for the `max`-th
    /// time and its `match` picks an arm that [loops](Arm::loops), the run goes to `target`
    /// instead.
    pub max: u32,
    /// Where the run goes when the bound is hit.
    pub target: Target,
}

/// The static description of a workflow, generated by `workflow!`.
///
/// # Examples
///
/// ```
/// use workflow::prelude::*;
///
/// #[step]
/// fn parse(text: &String) -> u32 {
///     text.len() as u32
/// }
/// #[step]
/// fn square(n: &u32) -> u32 {
///     n * n
/// }
///
/// workflow! {
///     /// Squares the length of a text.
///     pub Square(text: String) -> u32 {
///         let n = parse(text);
///         square(n)
///     }
/// }
///
/// let graph = Square::graph();
/// assert_eq!(graph.name, "Square");
/// assert_eq!(graph.nodes.len(), 2);
/// assert_eq!(graph.edges().count(), 3); // text -> n, n -> square, square -> output
/// assert!(graph.to_mermaid().contains("n0 --> n1"));
/// ```
#[derive(Debug, serde::Serialize)]
pub struct Graph {
    /// The workflow's name.
    pub name: &'static str,
    /// Its doc comment.
    pub doc: &'static str,
    /// The workflow's inputs (not counting the context).
    pub inputs: &'static [InputDef],
    /// The nodes, in declaration order.
    pub nodes: &'static [NodeDef],
    /// Where the workflow's output comes from.
    pub output: Source,
    /// The output type, as written.
    pub output_type: &'static str,
    /// Dataflow or state graph, and for a state graph its transitions.
    pub shape: Shape,
    /// Per node, how long its step last took in a run in memory: what the scheduler reads
    /// to decide whether ready nodes are worth another task. Not part of the description
    /// (not serialized); empty for a state graph, whose nodes run one at a time.
    #[serde(skip)]
    pub costs: &'static [NodeCost],
}

/// How long a node's step last took, as the runtime measured it in runs in memory (every
/// run of the workflow, across threads). `workflow!` makes one per node, in a `static`.
///
/// A step's time is written only when it differs from the one kept by more than a factor
/// of four, so that steps of the same graph ending on several threads do not keep writing
/// one cache line.
#[derive(Debug)]
pub struct NodeCost(AtomicU32);

impl NodeCost {
    /// A node not measured yet.
    pub const fn new() -> Self {
        Self(AtomicU32::new(0))
    }

    /// The step's last time, to within a factor of four, if it ran (at most about 4.3
    /// seconds).
    pub fn last(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(u64::from(nanos))),
        }
    }

    /// Takes in a step's time: kept if it is more than four times the time kept, or less
    /// than a quarter of it.
    pub(crate) fn record(&self, took: Duration) {
        let nanos = u32::try_from(took.as_nanos()).unwrap_or(u32::MAX).max(1);
        let kept = self.0.load(Ordering::Relaxed);
        if kept == 0 || nanos / 4 > kept || nanos < kept / 4 {
            self.0.store(nanos, Ordering::Relaxed);
        }
    }
}

impl Default for NodeCost {
    fn default() -> Self {
        Self::new()
    }
}

/// A transition of a state graph: an edge, a route's arm, or a route's bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The node the run leaves.
    pub from: NodeId,
    /// Where it goes.
    pub to: Target,
    /// The arm's pattern for a route's arm; `None` for an edge or a bound.
    pub pattern: Option<&'static str>,
    /// For a bound: its `max`.
    pub bound: Option<u32>,
}

/// An edge of a [`Graph`]: a value flowing from a source to a node or to the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Where the value comes from.
    pub from: Source,
    /// The node it feeds, or `None` for the workflow's output.
    pub to: Option<NodeId>,
}

impl Graph {
    /// A hash of the graph's structure: its name, inputs, nodes (name, step, output type,
    /// arguments, subgraph), output and, for a state graph, its transitions. Policies are
    /// left out, so that a run can resume after its retries or timeouts were tuned; any
    /// change that could make a stored checkpoint mean something else changes the hash.
    /// Stable across builds and processes (FNV-1a over a canonical encoding), shown as 16
    /// hex digits.
    ///
    /// # Examples
    ///
    /// ```
    /// use workflow::prelude::*;
    ///
    /// #[step]
    /// fn double(x: &u32) -> u32 {
    ///     x * 2
    /// }
    ///
    /// workflow! {
    ///     /// Doubles.
    ///     pub Double(x: u32) -> u32 {
    ///         double(x)
    ///     }
    /// }
    ///
    /// let hash = Double::graph().structural_hash();
    /// assert_eq!(hash.len(), 16);
    /// assert_eq!(hash, Double::graph().structural_hash());
    /// ```
    pub fn structural_hash(&self) -> String {
        let mut hash = Fnv::default();
        self.hash_into(&mut hash);
        format!("{:016x}", hash.0)
    }

    fn hash_into(&self, h: &mut Fnv) {
        h.str(self.name);
        h.str(self.output_type);
        h.usize(self.inputs.len());
        for input in self.inputs {
            h.str(input.name);
            h.str(input.ty);
        }
        h.usize(self.nodes.len());
        for node in self.nodes {
            h.str(node.name);
            h.str(node.step);
            h.str(node.output_type);
            h.usize(node.inputs.len());
            for source in node.inputs {
                h.source(*source);
            }
            h.usize(node.optional.len());
            for id in node.optional {
                h.usize(id.0);
            }
            match node.subgraph {
                Some(subgraph) => {
                    h.usize(1);
                    subgraph.hash_into(h);
                }
                None => h.usize(0),
            }
            if node.pause {
                h.str("pause");
            }
        }
        h.source(self.output);
        match &self.shape {
            Shape::Dataflow => h.usize(0),
            Shape::StateGraph(def) => {
                h.usize(1);
                h.str(def.state_type);
                h.usize(def.start.0);
                for next in def.next {
                    match next {
                        Next::Goto { target } => {
                            h.usize(0);
                            h.target(*target);
                        }
                        Next::Route { arms, bound } => {
                            h.usize(1);
                            h.usize(arms.len());
                            for arm in *arms {
                                h.str(arm.pattern);
                                h.target(arm.target);
                            }
                            if let Some(bound) = bound {
                                h.usize(u32::MAX as usize);
                                h.usize(bound.max as usize);
                                h.target(bound.target);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The node with this id.
    ///
    /// # Panics
    ///
    /// If `id` is not a node of this graph.
    pub fn node(&self, id: NodeId) -> &NodeDef {
        &self.nodes[id.0]
    }

    /// The node with this name, if any.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name).map(NodeId)
    }

    /// Finds nodes by name `lookups` times: through an index built once when they are
    /// many (restoring a large run's checkpoints, where [`Graph::find`] for each would be
    /// quadratic), by [`Graph::find`] when they are few.
    pub(crate) fn finder(&self, lookups: usize) -> NodeFinder<'_> {
        let index = (lookups > 8).then(|| {
            self.nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name, NodeId(i)))
                .collect()
        });
        NodeFinder { graph: self, index }
    }

    /// Every dataflow edge, once: from each distinct source of a node to that node, then
    /// from the output's source to the output. (A state graph's nodes have no inputs: see
    /// [`Graph::transitions`].)
    pub fn edges(&self) -> impl Iterator<Item = Edge> + '_ {
        let node_edges = self.nodes.iter().enumerate().flat_map(|(index, node)| {
            node.inputs
                .iter()
                .enumerate()
                .filter(|(i, source)| !node.inputs[..*i].contains(source))
                .map(move |(_, &from)| Edge {
                    from,
                    to: Some(NodeId(index)),
                })
        });
        node_edges.chain(std::iter::once(Edge {
            from: self.output,
            to: None,
        }))
    }

    /// The nodes that depend on no other node: they start as soon as the run does.
    pub fn roots(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.deps.is_empty())
            .map(|(i, _)| NodeId(i))
    }

    /// The nodes in an order where every node comes after all of its dependencies.
    pub fn topological_order(&self) -> Vec<NodeId> {
        let mut remaining: Vec<usize> = self.nodes.iter().map(|n| n.deps.len()).collect();
        let mut order: Vec<NodeId> = self.roots().collect();
        let mut next = 0;
        while next < order.len() {
            for &dependent in self.nodes[order[next].0].dependents {
                remaining[dependent.0] -= 1;
                if remaining[dependent.0] == 0 {
                    order.push(dependent);
                }
            }
            next += 1;
        }
        order
    }

    /// The state graph's transitions, or `None` for a dataflow workflow.
    pub fn state_graph(&self) -> Option<&StateGraphDef> {
        match &self.shape {
            Shape::StateGraph(def) => Some(def),
            Shape::Dataflow => None,
        }
    }

    /// Every transition of a state graph (none for a dataflow workflow), node by node: an
    /// edge, or a route's arms then its bound.
    pub fn transitions(&self) -> impl Iterator<Item = Transition> + '_ {
        let next = self.state_graph().map_or(&[][..], |def| def.next);
        next.iter().enumerate().flat_map(|(i, next)| {
            let from = NodeId(i);
            let (arms, bound, goto) = match next {
                Next::Goto { target } => (&[][..], None, Some(*target)),
                Next::Route { arms, bound } => (*arms, *bound, None),
            };
            let goto = goto.map(|to| Transition {
                from,
                to,
                pattern: None,
                bound: None,
            });
            let arms = arms.iter().map(move |arm| Transition {
                from,
                to: arm.target,
                pattern: Some(arm.pattern),
                bound: None,
            });
            let bound = bound.map(|bound| Transition {
                from,
                to: bound.target,
                pattern: None,
                bound: Some(bound.max),
            });
            goto.into_iter().chain(arms).chain(bound)
        })
    }

    /// Renders the graph as a Mermaid flowchart. A state graph's routes are labelled with
    /// their arms' patterns, its bounds drawn dotted; a subworkflow is drawn inside its node
    /// as a subgraph.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        self.mermaid_into(&mut out, "", 1);
        out
    }

    fn mermaid_into(&self, out: &mut String, prefix: &str, depth: usize) {
        let pad = "    ".repeat(depth);
        let state = self.state_graph();
        if let Some(def) = state {
            let _ = writeln!(out, "{pad}{prefix}begin([\"START\"])");
            let _ = writeln!(out, "{pad}{prefix}finish([\"END\"])");
            let _ = writeln!(out, "{pad}{prefix}begin --> {prefix}n{}", def.start.0);
        } else {
            for (i, input) in self.inputs.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{pad}{prefix}in{i}[/\"{}: {}\"/]",
                    input.name,
                    escape(input.ty)
                );
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let label = escape(&node_label(node));
            match node.subgraph {
                Some(inner) => {
                    let _ = writeln!(out, "{pad}subgraph {prefix}n{i} [\"{label}\"]");
                    inner.mermaid_into(out, &format!("{prefix}n{i}_"), depth + 1);
                    let _ = writeln!(out, "{pad}end");
                }
                None => {
                    let _ = writeln!(out, "{pad}{prefix}n{i}[\"{label}\"]");
                }
            }
        }
        if state.is_some() {
            for transition in self.transitions() {
                let from = transition.from.0;
                let to = target_id(transition.to);
                let arrow = match (transition.pattern, transition.bound) {
                    (Some(pattern), _) => format!("-->|\"{}\"|", escape(pattern)),
                    (None, Some(max)) => format!("-.->|\"max {max}\"|"),
                    (None, None) => "-->".to_owned(),
                };
                let _ = writeln!(out, "{pad}{prefix}n{from} {arrow} {prefix}{to}");
            }
            return;
        }
        let _ = writeln!(
            out,
            "{pad}{prefix}out[/\"output: {}\"/]",
            escape(self.output_type)
        );
        for edge in self.edges() {
            let _ = writeln!(
                out,
                "{pad}{prefix}{} --> {prefix}{}",
                mermaid_id(edge.from),
                edge_target(edge)
            );
        }
    }

    /// Renders the graph in Graphviz DOT; a subworkflow is a cluster inside its node.
    pub fn to_dot(&self) -> String {
        let mut out = format!("digraph {} {{\n    rankdir=TB;\n", self.name);
        out.push_str("    node [shape=box, style=rounded];\n");
        self.dot_into(&mut out, "", 1);
        out.push_str("}\n");
        out
    }

    fn dot_into(&self, out: &mut String, prefix: &str, depth: usize) {
        let pad = "    ".repeat(depth);
        let state = self.state_graph();
        if let Some(def) = state {
            let _ = writeln!(
                out,
                "{pad}{prefix}begin [label=\"START\", shape=oval];\n{pad}{prefix}finish [label=\"END\", shape=oval];"
            );
            let _ = writeln!(out, "{pad}{prefix}begin -> {prefix}n{};", def.start.0);
        } else {
            for (i, input) in self.inputs.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{pad}{prefix}in{i} [label=\"{}: {}\", shape=parallelogram];",
                    input.name,
                    escape_dot(input.ty)
                );
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let label = escape_dot(&node_label(node));
            match node.subgraph {
                Some(inner) => {
                    // An edge needs a node to end at: the cluster holds an anchor node.
                    let _ = writeln!(
                        out,
                        "{pad}subgraph cluster_{prefix}n{i} {{\n{pad}    label=\"{label}\";\n{pad}    {prefix}n{i} [label=\"{label}\", shape=plaintext];"
                    );
                    inner.dot_into(out, &format!("{prefix}n{i}_"), depth + 1);
                    let _ = writeln!(out, "{pad}}}");
                }
                None => {
                    let _ = writeln!(out, "{pad}{prefix}n{i} [label=\"{label}\"];");
                }
            }
        }
        if state.is_some() {
            for transition in self.transitions() {
                let from = transition.from.0;
                let to = target_id(transition.to);
                let attrs = match (transition.pattern, transition.bound) {
                    (Some(pattern), _) => format!(" [label=\"{}\"]", escape_dot(pattern)),
                    (None, Some(max)) => format!(" [label=\"max {max}\", style=dashed]"),
                    (None, None) => String::new(),
                };
                let _ = writeln!(out, "{pad}{prefix}n{from} -> {prefix}{to}{attrs};");
            }
            return;
        }
        let _ = writeln!(
            out,
            "{pad}{prefix}out [label=\"output: {}\", shape=parallelogram];",
            escape_dot(self.output_type)
        );
        for edge in self.edges() {
            let _ = writeln!(
                out,
                "{pad}{prefix}{} -> {prefix}{};",
                mermaid_id(edge.from),
                edge_target(edge)
            );
        }
    }
}

impl fmt::Display for Graph {
    /// Displays the graph as Mermaid.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_mermaid())
    }
}

fn node_label(node: &NodeDef) -> String {
    if node.name == node.step {
        node.name.to_owned()
    } else {
        format!("{} = {}", node.name, node.step)
    }
}

/// The id of a state graph's node or of its `END`, in both renderings.
fn target_id(target: Target) -> String {
    match target {
        Target::Node(id) => format!("n{}", id.0),
        Target::End => "finish".to_owned(),
    }
}

fn mermaid_id(source: Source) -> String {
    match source {
        Source::Input(i) => format!("in{i}"),
        Source::Node(id) => format!("n{}", id.0),
    }
}

fn edge_target(edge: Edge) -> String {
    edge.to
        .map_or_else(|| "out".to_owned(), |id| format!("n{}", id.0))
}

/// Escapes a label for a Mermaid double-quoted string (entity codes, so that generic types
/// like `Vec<Post>` are not read as HTML).
fn escape(text: &str) -> String {
    text.replace('"', "#quot;")
        .replace('|', "#124;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

/// Escapes a label for a DOT double-quoted string.
fn escape_dot(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// FNV-1a, 64 bits: small, and the same on every platform and in every build.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// A length-prefixed string, so that `("ab", "c")` and `("a", "bc")` differ.
    fn str(&mut self, text: &str) {
        self.usize(text.len());
        self.bytes(text.as_bytes());
    }

    fn usize(&mut self, n: usize) {
        self.bytes(&(n as u64).to_le_bytes());
    }

    fn source(&mut self, source: Source) {
        match source {
            Source::Input(i) => {
                self.usize(0);
                self.usize(i);
            }
            Source::Node(id) => {
                self.usize(1);
                self.usize(id.0);
            }
        }
    }

    fn target(&mut self, target: Target) {
        match target {
            Target::Node(id) => self.usize(id.0),
            Target::End => self.usize(usize::MAX),
        }
    }
}

/// Finds a graph's nodes by name (see [`Graph::finder`]).
pub(crate) struct NodeFinder<'a> {
    graph: &'a Graph,
    index: Option<std::collections::HashMap<&'static str, NodeId>>,
}

impl NodeFinder<'_> {
    /// The node with this name, if any.
    pub(crate) fn find(&self, name: &str) -> Option<NodeId> {
        match &self.index {
            Some(index) => index.get(name).copied(),
            None => self.graph.find(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::NodeCost;

    #[test]
    fn a_node_cost_keeps_the_last_time_within_a_factor_of_four() {
        let cost = NodeCost::new();
        assert_eq!(cost.last(), None);
        cost.record(Duration::from_micros(1));
        assert_eq!(cost.last(), Some(Duration::from_micros(1)));
        // Within a factor of four: the time kept stays (no write).
        cost.record(Duration::from_nanos(3_900));
        cost.record(Duration::from_nanos(260));
        assert_eq!(cost.last(), Some(Duration::from_micros(1)));
        // Ten times longer: kept.
        cost.record(Duration::from_micros(10));
        assert_eq!(cost.last(), Some(Duration::from_micros(10)));
        // Shorter again, by more than four: kept.
        cost.record(Duration::from_nanos(200));
        assert_eq!(cost.last(), Some(Duration::from_nanos(200)));
    }

    #[test]
    fn a_node_cost_saturates_and_never_reads_as_unmeasured() {
        let cost = NodeCost::new();
        cost.record(Duration::ZERO);
        assert_eq!(cost.last(), Some(Duration::from_nanos(1)));
        cost.record(Duration::from_secs(3600));
        assert_eq!(cost.last(), Some(Duration::from_nanos(u64::from(u32::MAX))));
    }
}
