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

use std::collections::HashMap;
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
    ty: String,
    /// The prefix of the hand-written baselines' names.
    func: String,
    doc: String,
    nodes: Vec<Node>,
    /// How many nodes read each node's output, the output's caller included.
    consumers: HashMap<String, usize>,
}

impl Shape {
    fn node(&mut self, name: impl Into<String>, step: &'static str, inputs: &[&str]) {
        let name = name.into();
        for &input in inputs {
            *self.consumers.entry(input.to_owned()).or_default() += 1;
        }
        // The latest node is the output, which its caller reads.
        if let Some(last) = self.nodes.last() {
            *self.consumers.entry(last.name.clone()).or_default() -= 1;
        }
        *self.consumers.entry(name.clone()).or_default() += 1;
        self.nodes.push(Node {
            name,
            step,
            inputs: inputs.iter().map(|&i| i.to_owned()).collect(),
        });
    }

    /// How many nodes read the output of `name` (the last node also feeds the result).
    fn consumers(&self, name: &str) -> usize {
        self.consumers.get(name).copied().unwrap_or(0)
    }

    /// Whether each node reads the one before it, and nothing else.
    fn is_chain(&self) -> bool {
        self.nodes.iter().enumerate().all(|(i, node)| match i {
            0 => node.inputs == ["x"],
            _ => node.inputs == [self.nodes[i - 1].name.as_str()],
        })
    }

    fn output(&self) -> &str {
        &self.nodes.last().expect("a shape has nodes").name
    }
}

/// `inc` `n` times, each step reading the previous step's output.
fn chain(n: usize) -> Shape {
    let mut shape = Shape {
        ty: format!("Chain{n}"),
        func: format!("chain_{n}"),
        doc: format!("A chain of {n} no-op steps, each reading the previous step's output."),
        nodes: Vec::new(),
        consumers: HashMap::new(),
    };
    shape.node("s0", "inc", &["x"]);
    for i in 1..n {
        let previous = format!("s{}", i - 1);
        shape.node(format!("s{i}"), "inc", &[&previous]);
    }
    shape
}

/// One root, `n` leaves (a power of ten) reading it, joined in a tree of `sum10` steps:
/// for 1000, 100 sums of 10 leaves, 10 sums of 10 of those, one sum of the last 10 (1112
/// steps in all). The leaves are `leaf` steps: no-ops unless a benchmark gives them work.
///
/// Declared depth first (ten leaves, their sum, the next ten...), which changes nothing to
/// the graph but keeps few values alive at once in the straight-line hand-written code:
/// with all 1000 leaves first, the optimised build of that code takes minutes.
fn fanout(n: usize) -> Shape {
    let mut levels = 0;
    while 10_usize.pow(levels) < n {
        levels += 1;
    }
    assert_eq!(10_usize.pow(levels), n, "a fan-out of a power of ten");
    let mut shape = Shape {
        ty: format!("Fanout{n}"),
        func: format!("fanout_{n}"),
        doc: String::new(),
        nodes: Vec::new(),
        consumers: HashMap::new(),
    };
    shape.node("root", "inc", &["x"]);
    subtree(&mut shape, levels, 0);
    let sums = shape.nodes.len() - n - 1;
    shape.doc = format!(
        "One root, {n} no-op leaves reading it, joined by a tree of {sums} `sum10` steps: \
         {} steps.",
        shape.nodes.len()
    );
    shape
}

/// The nodes of the subtree of level `level` (the leaves are level 0) and index `index`,
/// declared depth first; returns its root's name (`l{index}` or `j{level}_{index}`).
fn subtree(shape: &mut Shape, level: u32, index: usize) -> String {
    if level == 0 {
        let name = format!("l{index}");
        shape.node(name.clone(), "leaf", &["root"]);
        return name;
    }
    let inputs: Vec<String> = (index * 10..index * 10 + 10)
        .map(|child| subtree(shape, level - 1, child))
        .collect();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let name = format!("j{level}_{index}");
    shape.node(name.clone(), "sum10", &inputs);
    name
}

/// The content pipeline's shape, with no-op steps.
fn pipeline() -> Shape {
    let mut shape = Shape {
        ty: "Pipeline".to_owned(),
        func: "pipeline".to_owned(),
        doc: "The content pipeline's shape with no-op steps: research -> post -> \
              {linkedin, twitter, email}; twitter -> meta; all four -> check -> publish."
            .to_owned(),
        nodes: Vec::new(),
        consumers: HashMap::new(),
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

/// The shapes of `benches/generated/graphs.rs`, which every benchmark includes.
fn shapes() -> Vec<Shape> {
    vec![
        chain(10),
        chain(100),
        chain(1000),
        fanout(10),
        fanout(100),
        fanout(1000),
        pipeline(),
    ]
}

/// The shapes of `benches/generated/large.rs`, which only the `large` benchmark includes
/// (its workflow takes minutes to build in release).
fn large_shapes() -> Vec<Shape> {
    vec![fanout(10_000)]
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
    if shape.is_chain() {
        // Nothing to overlap: one step after the other, plain sequential `.await`s.
        for node in &shape.nodes {
            let _ = writeln!(
                out,
                "    let {} = step_after1({}, ready({})).await;",
                node.name, node.step, node.inputs[0]
            );
        }
        let _ = writeln!(out, "    {}", shape.output());
        let _ = writeln!(out, "}}");
        return;
    }
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

/// The generated file with `shapes`, each also written by hand unless `by_hand` is false
/// (the large shapes' hand-written versions are loops, in the benchmark itself: written out
/// as straight-line code, 11,112 steps take the optimiser many minutes).
fn generate(shapes: Vec<Shape>, by_hand: bool) -> String {
    let mut out = String::from(
        "// @generated by tests/bench_graphs.rs: do not edit. Regenerate with\n\
         // `UPDATE_BENCH_GRAPHS=1 cargo test --test bench_graphs`.\n\
         //\n",
    );
    out.push_str(if by_hand {
        "// Each shape is written three times from one description (same nodes, same edges,\n\
         // same join tree): as a `workflow!`, as a tokio program with one task per step, and\n\
         // as a tokio program driving every step's future in one task.\n"
    } else {
        "// Each shape as a `workflow!`; the benchmark writes the same graphs by hand as loops.\n"
    });
    for shape in shapes {
        let _ = writeln!(
            out,
            "\n// ---- {} ({} steps) ----\n",
            shape.ty,
            shape.nodes.len()
        );
        workflow(&mut out, &shape);
        if by_hand {
            out.push('\n');
            tokio_spawn(&mut out, &shape);
            out.push('\n');
            tokio_single_task(&mut out, &shape);
        }
    }
    out
}

/// Checks (or, with `UPDATE_BENCH_GRAPHS` set, writes) `benches/generated/<file>`.
fn up_to_date(file: &str, expected: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches/generated")
        .join(file);
    if std::env::var_os("UPDATE_BENCH_GRAPHS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent directory"))
            .expect("create benches/generated");
        std::fs::write(&path, expected).expect("write a generated file");
        return;
    }
    let actual = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .replace("\r\n", "\n");
    assert!(
        actual == expected,
        "benches/generated/{file} is not what tests/bench_graphs.rs generates; \
         regenerate it with `UPDATE_BENCH_GRAPHS=1 cargo test --test bench_graphs`"
    );
}

#[test]
fn bench_graphs_are_up_to_date() {
    up_to_date("graphs.rs", &generate(shapes(), true));
    up_to_date("large.rs", &generate(large_shapes(), false));
}

#[test]
fn shapes_have_the_documented_sizes() {
    let all: Vec<Shape> = shapes().into_iter().chain(large_shapes()).collect();
    let sizes: Vec<usize> = all.iter().map(|shape| shape.nodes.len()).collect();
    assert_eq!(sizes, [10, 100, 1000, 12, 112, 1112, 8, 11_112]);
    // Every node but the output is read by some node: nothing is computed for nothing.
    for shape in &all {
        for node in &shape.nodes {
            assert!(shape.consumers(&node.name) > 0, "{} is unused", node.name);
        }
    }
    let chains: Vec<bool> = all.iter().map(Shape::is_chain).collect();
    assert_eq!(
        chains,
        [true, true, true, false, false, false, false, false]
    );
}
