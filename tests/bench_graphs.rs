//! Generates `benches/generated/graphs.rs`, the static graphs of the `overhead` benchmark,
//! and checks that the committed file is what the generator produces.
//!
//! Regenerate with `UPDATE_BENCH_GRAPHS=1 cargo test --test bench_graphs`.
//!
//! Every shape is described once, as a list of nodes, and written out three times from that
//! one description: as a `workflow!`, as a hand-written tokio program with one task per step
//! (`*_tokio_spawn`), and as a hand-written tokio program that drives every step's future in
//! one task (`*_tokio_single_task`). So the three always have the same nodes, the same edges
//! and the same joins.

use std::fmt::Write as _;
use std::path::PathBuf;

/// One node: `let name = step(inputs...);`.
struct Node {
    name: String,
    step: &'static str,
    /// Node names, or the workflow input `x`.
    inputs: Vec<String>,
}

/// One graph, with a single `u64` input named `x`; its output is its last node.
struct Shape {
    /// The workflow type's name.
    ty: &'static str,
    /// The prefix of the hand-written baselines' names.
    func: &'static str,
    doc: &'static str,
    nodes: Vec<Node>,
}

impl Shape {
    fn node(&mut self, name: impl Into<String>, step: &'static str, inputs: &[&str]) {
        self.nodes.push(Node {
            name: name.into(),
            step,
            inputs: inputs.iter().map(|&i| i.to_owned()).collect(),
        });
    }

    /// How many nodes read the output of `name` (the last node also feeds the result).
    fn consumers(&self, name: &str) -> usize {
        let readers = self
            .nodes
            .iter()
            .filter(|node| node.inputs.iter().any(|input| input == name))
            .count();
        let is_output = self.nodes.last().is_some_and(|node| node.name == name);
        readers + usize::from(is_output)
    }

    fn output(&self) -> &str {
        &self.nodes.last().expect("a shape has nodes").name
    }
}

/// `inc` 100 times, each step reading the previous step's output.
fn chain() -> Shape {
    let mut shape = Shape {
        ty: "Chain100",
        func: "chain_100",
        doc: "A chain of 100 no-op steps, each reading the previous step's output.",
        nodes: Vec::new(),
    };
    shape.node("s0", "inc", &["x"]);
    for i in 1..100 {
        let previous = format!("s{}", i - 1);
        shape.node(format!("s{i}"), "inc", &[&previous]);
    }
    shape
}

/// One root, 1000 leaves reading it, joined in a tree of `sum10` steps: 100 sums of 10
/// leaves, 10 sums of 10 of those, one sum of the last 10. 1112 steps in all.
///
/// Declared depth first (ten leaves, their sum, the next ten...), which changes nothing to
/// the graph but keeps few values alive at once in the straight-line hand-written code:
/// with all 1000 leaves first, the optimised build of that code takes minutes.
fn fanout() -> Shape {
    let mut shape = Shape {
        ty: "Fanout1000",
        func: "fanout_1000",
        doc: "One root, 1000 no-op leaves reading it, joined by a tree of `sum10` steps \
              (100 + 10 + 1): 1112 steps.",
        nodes: Vec::new(),
    };
    shape.node("root", "inc", &["x"]);
    let names = |prefix: &str, first: usize| -> Vec<String> {
        (first..first + 10)
            .map(|i| format!("{prefix}{i}"))
            .collect()
    };
    let sum = |shape: &mut Shape, name: String, inputs: Vec<String>| {
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        shape.node(name, "sum10", &inputs);
    };
    for b in 0..10 {
        for a in b * 10..b * 10 + 10 {
            for leaf in names("l", a * 10) {
                shape.node(leaf, "inc", &["root"]);
            }
            sum(&mut shape, format!("a{a}"), names("l", a * 10));
        }
        sum(&mut shape, format!("b{b}"), names("a", b * 10));
    }
    sum(&mut shape, "total".to_owned(), names("b", 0));
    shape
}

/// The content pipeline's shape, with no-op steps.
fn pipeline() -> Shape {
    let mut shape = Shape {
        ty: "Pipeline",
        func: "pipeline",
        doc: "The content pipeline's shape with no-op steps: research -> post -> \
              {linkedin, twitter, email}; twitter -> meta; all four -> check -> publish.",
        nodes: Vec::new(),
    };
    shape.node("research", "research", &["x"]);
    shape.node("post", "blog_post", &["research"]);
    shape.node("linkedin", "linkedin", &["post"]);
    shape.node("tweet", "twitter", &["post"]);
    shape.node("email", "email", &["post"]);
    shape.node("meta", "meta", &["tweet"]);
    shape.node(
        "checked",
        "quality_check",
        &["linkedin", "tweet", "email", "meta"],
    );
    shape.node("published", "publish", &["checked"]);
    shape
}

fn shapes() -> Vec<Shape> {
    vec![chain(), fanout(), pipeline()]
}

fn workflow(out: &mut String, shape: &Shape) {
    let _ = writeln!(out, "workflow! {{");
    let _ = writeln!(out, "    /// {}", shape.doc);
    let _ = writeln!(out, "    {}(x: u64) -> u64 {{", shape.ty);
    for node in &shape.nodes {
        let _ = writeln!(
            out,
            "        let {} = {}({});",
            node.name,
            node.step,
            node.inputs.join(", ")
        );
    }
    let _ = writeln!(out, "        {}", shape.output());
    let _ = writeln!(out, "    }}");
    let _ = writeln!(out, "}}");
}

/// The arguments of a node's helper call: the workflow input as a ready future, a node
/// read by several nodes as a clone of its `Shared` future, any other node as itself.
fn args(shape: &Shape, node: &Node) -> String {
    let args: Vec<String> = node
        .inputs
        .iter()
        .map(|input| {
            if input == "x" {
                "ready(x)".to_owned()
            } else if shape.consumers(input) > 1 {
                format!("{input}.clone()")
            } else {
                input.clone()
            }
        })
        .collect();
    args.join(", ")
}

/// One `let` per node, on one line each, named like the nodes of the `workflow!` (the
/// output's too, hence `let_and_return`).
const BASELINE_ATTRS: &str = "#[rustfmt::skip]\n\
    #[allow(clippy::similar_names, clippy::too_many_lines, clippy::let_and_return)]";

/// Hand-written, one tokio task per step, spawned up front; each task awaits its inputs'
/// tasks in turn (`step_after{n}`: they run on their own, so this waits exactly until the
/// last one is done), then runs its step.
///
/// A plain function that spawns the tasks and returns the output's task, to be awaited:
/// spawning is synchronous, and as an `async fn` holding 1112 tasks the fan-out takes
/// minutes to optimise. Nodes go through generic helpers rather than one `async` block
/// each, as hand-written code would: the 1000 leaves are then one future type, not 1000
/// instantiations of tokio's task machinery.
fn tokio_spawn(out: &mut String, shape: &Shape) {
    let _ = writeln!(
        out,
        "/// `{}` by hand: spawns one tokio task per step, each awaiting its inputs' tasks,",
        shape.ty
    );
    let _ = writeln!(out, "/// and returns the output's task.");
    let _ = writeln!(out, "{BASELINE_ATTRS}");
    let _ = writeln!(out, "fn {}_tokio_spawn(x: u64) -> Task<u64> {{", shape.func);
    for node in &shape.nodes {
        let spawn = if shape.consumers(&node.name) > 1 {
            "shared_task"
        } else {
            "task"
        };
        let _ = writeln!(
            out,
            "    let {} = {spawn}(step_after{}({}, {}));",
            node.name,
            node.inputs.len(),
            node.step,
            args(shape, node)
        );
    }
    let _ = writeln!(out, "    {}", shape.output());
    let _ = writeln!(out, "}}");
}

/// Hand-written, no spawn: every step is a future of the run's own task, pinned in its
/// frame; a node reading several inputs polls them together (`step_join{n}`, with
/// `tokio::join!`).
///
/// A node read by one node is pinned in place and its reader holds a `Pin<&mut _>`:
/// nesting the futures themselves would double their size at every level (rustc keeps both
/// the captured future and the one being awaited), which a chain of 100 cannot afford. A
/// node read by several is a `Shared` future.
fn tokio_single_task(out: &mut String, shape: &Shape) {
    let _ = writeln!(
        out,
        "/// `{}` by hand: every step's future driven in one task (`join!`, no spawn).",
        shape.ty
    );
    let _ = writeln!(out, "{BASELINE_ATTRS}");
    let _ = writeln!(
        out,
        "async fn {}_tokio_single_task(x: u64) -> u64 {{",
        shape.func
    );
    for node in &shape.nodes {
        let helper = match node.inputs.len() {
            1 => "step_after1".to_owned(),
            n => format!("step_join{n}"),
        };
        let call = format!("{helper}({}, {})", node.step, args(shape, node));
        let future = if shape.consumers(&node.name) > 1 {
            format!("{call}.shared()")
        } else {
            format!("pin!({call})")
        };
        let _ = writeln!(out, "    let {} = {future};", node.name);
    }
    let _ = writeln!(out, "    {}.await", shape.output());
    let _ = writeln!(out, "}}");
}

fn generate() -> String {
    let mut out = String::from(
        "// @generated by tests/bench_graphs.rs: do not edit. Regenerate with\n\
         // `UPDATE_BENCH_GRAPHS=1 cargo test --test bench_graphs`.\n\
         //\n\
         // Each shape is written three times from one description (same nodes, same edges,\n\
         // same join tree): as a `workflow!`, as a tokio program with one task per step, and\n\
         // as a tokio program driving every step's future in one task.\n",
    );
    for shape in shapes() {
        let _ = writeln!(
            out,
            "\n// ---- {} ({} steps) ----\n",
            shape.ty,
            shape.nodes.len()
        );
        workflow(&mut out, &shape);
        out.push('\n');
        tokio_spawn(&mut out, &shape);
        out.push('\n');
        tokio_single_task(&mut out, &shape);
    }
    out
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/generated/graphs.rs")
}

#[test]
fn bench_graphs_are_up_to_date() {
    let expected = generate();
    let path = path();
    if std::env::var_os("UPDATE_BENCH_GRAPHS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent directory"))
            .expect("create benches/generated");
        std::fs::write(&path, &expected).expect("write benches/generated/graphs.rs");
        return;
    }
    let actual = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .replace("\r\n", "\n");
    assert!(
        actual == expected,
        "benches/generated/graphs.rs is not what tests/bench_graphs.rs generates; \
         regenerate it with `UPDATE_BENCH_GRAPHS=1 cargo test --test bench_graphs`"
    );
}

#[test]
fn shapes_have_the_documented_sizes() {
    let sizes: Vec<usize> = shapes().iter().map(|shape| shape.nodes.len()).collect();
    assert_eq!(sizes, [100, 1112, 8]);
    // Every node but the output is read by some node: nothing is computed for nothing.
    for shape in shapes() {
        for node in &shape.nodes {
            assert!(shape.consumers(&node.name) > 0, "{} is unused", node.name);
        }
    }
}
