//! What a big `workflow!` adds to a build, and how that grows with its number of nodes.
//!
//! For each size N (100, 500 and 1,000 nodes) the benchmark writes two library crates into a
//! cargo workspace in the system's temporary directory (`<tmp>/workflow-compile-time`, kept
//! between runs so that its dependencies stay built), both depending on this package by
//! path, without default features:
//! - `wf-N`: four shared `#[step]` functions over `u64` (one to four inputs) and one
//!   `workflow!` of N nodes, in layers of widths 1, 16, 4, 8, 3, 6, 2, 1, 16, ... (a
//!   fan-out from one node to 16, fan-ins from 16 to 4, 8 to 3, ...): each node reads the
//!   nodes of the layer before whose index falls to it (index modulo the layer's width),
//!   and every other node also one node two to five layers back; the nodes nobody reads are
//!   joined four at a time into the output (`common/layered.rs`);
//! - `plain-N`: the same steps, and the same N calls written as plain Rust: one function
//!   calling the steps in the workflow's order, with no graph. The difference is what the
//!   workflow adds.
//!
//! It builds the workspace once (the dependencies, and the crates once), then rebuilds each
//! crate alone, its source rewritten so that cargo compiles it and nothing else, with
//! `cargo check`, with `cargo build` (debug) and with `cargo build --release`,
//! `COMPILE_TIME_REPS` times (3 unless set), and takes the median of each. Incremental compilation is off (`CARGO_INCREMENTAL=0`):
//! each figure is a full compile of the crate, the cost of a change to the file that holds
//! the workflow. The wall time of `cargo` is measured, so each figure includes cargo's own
//! start-up; the baseline pays it too, so the difference does not.
//!
//! The size of the macro's expansion comes from `workflow-macros`' unit test
//! `expansion_grows_linearly`, which expands the same workflows (it includes
//! `common/layered.rs`) and prints their size and the time the expansion took in a debug
//! build, as the macro runs in a debug build of a user's crate.
//!
//! The figures are printed as a table and written to `docs/bench/compile_time.json`.
//! `COMPILE_TIME_SIZES=100,500` measures other sizes. Run with `cargo bench --bench
//! compile_time`; it takes a few minutes, more on the first run (building the
//! dependencies).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

include!("common/layered.rs");

/// The shared steps, `step1` to `step4` (the number is the step's inputs).
const STEPS: &str = r"
#[step]
pub fn step1(a: &u64) -> u64 {
    a.wrapping_mul(31).wrapping_add(7)
}

#[step]
pub fn step2(a: &u64, b: &u64) -> u64 {
    a.wrapping_mul(31).wrapping_add(*b)
}

#[step]
pub fn step3(a: &u64, b: &u64, c: &u64) -> u64 {
    a.wrapping_add(*b).wrapping_mul(31).wrapping_add(*c)
}

#[step]
pub fn step4(a: &u64, b: &u64, c: &u64, d: &u64) -> u64 {
    a.wrapping_add(*b).wrapping_mul(31).wrapping_add(c ^ d)
}
";

/// Writes the crates, measures each size, prints the table and writes the JSON.
fn main() {
    let sizes = sizes();
    let reps = env_number("COMPILE_TIME_REPS").unwrap_or(3).max(1);
    let root = std::env::temp_dir().join("workflow-compile-time");
    println!(
        "compile time of workflow! (workspace in {})",
        root.display()
    );
    write_workspace(&root, &sizes);

    println!("building the workspace once (dependencies included)...");
    let start = Instant::now();
    for command in COMMANDS {
        cargo(&root, &[command, &["--workspace", "--lib"]].concat());
    }
    println!("  {:.1} s", start.elapsed().as_secs_f64());

    let expansions = expansions(&root);
    let mut rows = Vec::new();
    for &n in &sizes {
        let row = measure(&root, n, reps, expansions.iter().find(|e| e.nodes == n));
        // The row as the table will show it, as soon as it is measured.
        println!("  {}", table_row(&row).trim_end());
        rows.push(row);
    }
    println!();
    print!("{}", table(&rows));
    let json = json(&rows, reps);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bench/compile_time.json");
    std::fs::create_dir_all(path.parent().expect("a file in a directory"))
        .expect("create docs/bench");
    std::fs::write(&path, json).expect("write the figures");
    println!("\nwritten to {}", path.display());
}

/// The sizes to measure: `COMPILE_TIME_SIZES` (comma-separated) or 100, 500, 1000.
fn sizes() -> Vec<usize> {
    std::env::var("COMPILE_TIME_SIZES").map_or_else(
        |_| vec![100, 500, 1000],
        |sizes| {
            sizes
                .split(',')
                .map(|n| n.trim().parse().expect("COMPILE_TIME_SIZES: numbers"))
                .collect()
        },
    )
}

/// A whole number from the environment.
fn env_number(name: &str) -> Option<usize> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: a number")),
    )
}

// ---- The generated crates. ----

/// The same calls as plain Rust: the steps called one after the other.
fn plain_body(n: usize) -> String {
    let nodes = layered_shape(n);
    let mut body = String::from("pub fn big(input: u64) -> u64 {\n");
    for (i, reads) in nodes.iter().enumerate() {
        let args = if i == 0 {
            "&input".to_owned()
        } else {
            reads
                .iter()
                .map(|&r| format!("&{}", layered_binding(r)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let step = reads.len().max(1);
        writeln!(body, "    let {} = step{step}({args});", layered_binding(i)).expect("a string");
    }
    writeln!(body, "    {}\n}}", layered_binding(nodes.len() - 1)).expect("a string");
    body
}

/// The source of crate `wf-n` or `plain-n`.
fn crate_source(n: usize, plain: bool) -> String {
    let (what, body) = if plain {
        ("the same calls as plain Rust", plain_body(n))
    } else {
        (
            "a workflow",
            format!("workflow! {{\n{}}}\n", layered_workflow(n)),
        )
    };
    format!("//! {what} of {n} nodes.\n\nuse workflow::prelude::*;\n{STEPS}\n{body}")
}

/// The workspace: one `wf-n` and one `plain-n` crate per size, with this package's lock
/// file (so that they build with the versions it was tested with).
fn write_workspace(root: &Path, sizes: &[usize]) {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let members: Vec<String> = sizes
        .iter()
        .flat_map(|n| [format!("\"wf-{n}\""), format!("\"plain-{n}\"")])
        .collect();
    std::fs::create_dir_all(root).expect("create the workspace");
    write_if_changed(
        &root.join("Cargo.toml"),
        &format!(
            "[workspace]\nresolver = \"3\"\nmembers = [{}]\n",
            members.join(", ")
        ),
    );
    std::fs::copy(manifest_dir.join("Cargo.lock"), root.join("Cargo.lock"))
        .expect("copy Cargo.lock");
    for &n in sizes {
        for plain in [false, true] {
            let dir = crate_dir(root, n, plain);
            std::fs::create_dir_all(dir.join("src")).expect("create a crate");
            write_if_changed(
                &dir.join("Cargo.toml"),
                &format!(
                    "[package]\nname = \"{}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n[dependencies]\nworkflow = {{ path = {:?}, default-features = false }}\n",
                    crate_name(n, plain),
                    manifest_dir.display().to_string(),
                ),
            );
            write_if_changed(&dir.join("src/lib.rs"), &crate_source(n, plain));
        }
    }
}

/// Writes `contents` unless the file already holds them (so that a second run does not
/// rebuild what has not changed).
fn write_if_changed(path: &Path, contents: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
        std::fs::write(path, contents).expect("write a generated file");
    }
}

/// `wf-n` or `plain-n`.
fn crate_name(n: usize, plain: bool) -> String {
    if plain {
        format!("plain-{n}")
    } else {
        format!("wf-{n}")
    }
}

/// Where crate `wf-n` or `plain-n` lives.
fn crate_dir(root: &Path, n: usize, plain: bool) -> PathBuf {
    root.join(crate_name(n, plain))
}

// ---- Measurements. ----

/// The commands measured: `cargo check`, a debug build and a release build.
const COMMANDS: [&[&str]; 3] = [&["check"], &["build"], &["build", "--release"]];

/// Runs `cargo` in the workspace, with its own target directory, and returns the crates
/// it compiled; panics with cargo's output when it fails.
fn cargo(root: &Path, args: &[&str]) -> Vec<String> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(args)
        .current_dir(root)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env("CARGO_INCREMENTAL", "0")
        .env("CARGO_TERM_COLOR", "never")
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "cargo {} failed:\n{stderr}",
        args.join(" ")
    );
    if stderr.contains("warning") {
        eprintln!("cargo {}:\n{stderr}", args.join(" "));
    }
    stderr
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let rest = line
                .strip_prefix("Compiling ")
                .or_else(|| line.strip_prefix("Checking "))?;
            rest.split_whitespace().next().map(ToOwned::to_owned)
        })
        .collect()
}

/// The wall and CPU time of one command.
#[derive(Clone, Copy)]
struct Time {
    wall: Duration,
    /// User and system time of cargo and what it ran; `None` where `/proc` is missing.
    cpu: Option<Duration>,
}

/// Rebuilds crate `n` alone with `cargo <command>` and times it: first brings its
/// dependencies up to date (untimed: this package may be changing under the benchmark),
/// then rewrites the crate's source (the same text, a new modification time) and runs the
/// command again. A run that compiled anything else is discarded and made again.
fn time_rebuild(root: &Path, n: usize, plain: bool, command: &[&str]) -> Time {
    let name = crate_name(n, plain);
    let args = [command, &["-p", &name, "--lib"]].concat();
    let source = crate_dir(root, n, plain).join("src/lib.rs");
    for attempt in 1.. {
        cargo(root, &args);
        let text = std::fs::read(&source).expect("read a generated source");
        std::fs::write(&source, text).expect("rewrite a generated source");
        let cpu_before = children_cpu_time();
        let start = Instant::now();
        let compiled = cargo(root, &args);
        let wall = start.elapsed();
        let cpu = children_cpu_time()
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before));
        let others: Vec<&String> = compiled.iter().filter(|c| **c != name).collect();
        if others.is_empty() || attempt == 5 {
            if !others.is_empty() {
                eprintln!(
                    "warning: cargo {} -p {name} kept rebuilding {others:?}",
                    command.join(" ")
                );
            }
            return Time { wall, cpu };
        }
    }
    unreachable!("the loop returns")
}

/// The user and system time of this process's finished children (and theirs), from
/// `/proc/self/stat`.
fn children_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses: state is field 3,
    // cutime 16 and cstime 17 (proc(5)), in clock ticks.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks: u64 = fields.get(13)?.parse::<u64>().ok()? + fields.get(14)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / clock_ticks()))
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 where that fails).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

/// The medians of one crate and command.
#[derive(Clone, Copy)]
struct Median {
    wall: Duration,
    cpu: Option<Duration>,
}

impl Median {
    /// The medians of some repetitions.
    fn of(times: &[Time]) -> Self {
        let middle = |mut values: Vec<Duration>| {
            values.sort();
            values[values.len() / 2]
        };
        let cpu: Option<Vec<Duration>> = times.iter().map(|t| t.cpu).collect();
        Self {
            wall: middle(times.iter().map(|t| t.wall).collect()),
            cpu: cpu.map(middle),
        }
    }
}

/// The figures of one size: per command of `COMMANDS`, the workflow's crate and the plain
/// one.
struct Row {
    nodes: usize,
    workflow: [Median; 3],
    plain: [Median; 3],
    expansion: Option<Expansion>,
}

impl Row {
    /// What the workflow adds to `cargo check`, in seconds of wall time.
    fn added_check(&self) -> f64 {
        self.added(0)
    }

    /// What the workflow adds to a debug `cargo build`, in seconds of wall time.
    fn added_build(&self) -> f64 {
        self.added(1)
    }

    /// What the workflow adds to `cargo build --release`, in seconds of wall time.
    fn added_release(&self) -> f64 {
        self.added(2)
    }

    /// What the workflow adds to command `k` of `COMMANDS`, in seconds of wall time.
    fn added(&self, k: usize) -> f64 {
        secs(self.workflow[k].wall) - secs(self.plain[k].wall)
    }

    /// What the workflow adds to a debug `cargo build`, in seconds of CPU time.
    fn added_build_cpu(&self) -> Option<f64> {
        Some(secs(self.workflow[1].cpu?) - secs(self.plain[1].cpu?))
    }
}

/// Seconds, for the figures.
fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Medians of `reps` rebuilds of each crate, each command; the crates and commands take
/// turns, so that a slow spell of the machine touches all of them.
fn measure(root: &Path, n: usize, reps: usize, expansion: Option<&Expansion>) -> Row {
    let mut workflow: [Vec<Time>; 3] = Default::default();
    let mut plain: [Vec<Time>; 3] = Default::default();
    for _ in 0..reps {
        for (k, command) in COMMANDS.into_iter().enumerate() {
            workflow[k].push(time_rebuild(root, n, false, command));
            plain[k].push(time_rebuild(root, n, true, command));
        }
    }
    Row {
        nodes: n,
        workflow: workflow.map(|t| Median::of(&t)),
        plain: plain.map(|t| Median::of(&t)),
        expansion: expansion.cloned(),
    }
}

/// The size of the expansion of an `n`-node workflow, and the time it took.
#[derive(Clone)]
struct Expansion {
    nodes: usize,
    tokens: usize,
    bytes: usize,
    input_bytes: usize,
    millis: f64,
}

/// Runs `workflow-macros`' `expansion_grows_linearly` test and reads its figures; none
/// when it fails (the timings are still worth having).
fn expansions(root: &Path) -> Vec<Expansion> {
    println!("expanding the workflows (workflow-macros' expansion_grows_linearly test)...");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args([
            "test",
            "--quiet",
            "-p",
            "workflow-macros",
            "--lib",
            "--manifest-path",
        ])
        .arg(&manifest)
        .args([
            "--",
            "--exact",
            "tests::expansion_grows_linearly",
            "--nocapture",
        ])
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env("CARGO_TERM_COLOR", "never")
        .output()
        .expect("run cargo test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        eprintln!(
            "the expansion test failed; no expansion sizes:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return Vec::new();
    }
    stdout.lines().filter_map(parse_expansion).collect()
}

/// Reads `expansion of N nodes: T tokens, B bytes, input I bytes, M ms`.
fn parse_expansion(line: &str) -> Option<Expansion> {
    let rest = line.strip_prefix("expansion of ")?;
    let numbers: Vec<f64> = rest
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    let [nodes, tokens, bytes, input_bytes, millis] = numbers[..] else {
        return None;
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = |x: f64| x as usize;
    Some(Expansion {
        nodes: whole(nodes),
        tokens: whole(tokens),
        bytes: whole(bytes),
        input_bytes: whole(input_bytes),
        millis,
    })
}

// ---- Reports. ----

/// One size's line of the table.
fn table_row(row: &Row) -> String {
    let mut line = String::new();
    let expansion = row.expansion.as_ref().map_or_else(
        || "- | -".to_owned(),
        |e| {
            format!(
                "{} tokens, {} KiB | {:.0} ms",
                e.tokens,
                e.bytes / 1024,
                e.millis
            )
        },
    );
    let cpu = row
        .added_build_cpu()
        .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.2} s"));
    let [check, build, release] = row.workflow.map(|m| secs(m.wall));
    let [plain_check, plain_build, plain_release] = row.plain.map(|m| secs(m.wall));
    writeln!(
        line,
        "| {} | {check:.2} s | {build:.2} s | {release:.2} s | {plain_check:.2} s | {plain_build:.2} s | {plain_release:.2} s | {:.2} s | {:.2} s | {:.1} ms | {cpu} | {:.2} s | {expansion} |",
        row.nodes,
        row.added_check(),
        row.added_build(),
        row.added_build() * 1000.0 / as_f64(row.nodes),
        row.added_release(),
    )
    .expect("a string");
    line
}

/// The figures as a Markdown table, and how they grow.
fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| nodes | check | debug build | release build | plain check | plain build | plain release | added check | added build | added build / node | added build, CPU | added release | expansion | macro (debug) |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for row in rows {
        out.push_str(&table_row(row));
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last())
        && last.nodes > first.nodes
    {
        writeln!(
            out,
            "\ngrowth from {} to {} nodes ({:.0}x): added check {:.1}x, added build {:.1}x, added release build {:.1}x",
            first.nodes,
            last.nodes,
            as_f64(last.nodes) / as_f64(first.nodes),
            last.added_check() / first.added_check(),
            last.added_build() / first.added_build(),
            last.added_release() / first.added_release(),
        )
        .expect("a string");
    }
    out
}

/// A count as a float, for ratios (exact below 2^52).
#[allow(clippy::cast_precision_loss)]
fn as_f64(n: usize) -> f64 {
    n as f64
}

/// A median as JSON: seconds of wall time, and of CPU time when known.
fn median_json(median: Median) -> serde_json::Value {
    serde_json::json!({
        "wall_s": secs(median.wall),
        "cpu_s": median.cpu.map(secs),
    })
}

/// The figures as JSON, for plots.
fn json(rows: &[Row], reps: usize) -> String {
    let rustc = Command::new("rustc")
        .arg("-V")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default();
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let expansion = row.expansion.as_ref().map(|e| {
                serde_json::json!({
                    "tokens": e.tokens,
                    "bytes": e.bytes,
                    "input_bytes": e.input_bytes,
                    "macro_ms_debug": e.millis,
                })
            });
            serde_json::json!({
                "nodes": row.nodes,
                "check": median_json(row.workflow[0]),
                "build": median_json(row.workflow[1]),
                "release": median_json(row.workflow[2]),
                "plain_check": median_json(row.plain[0]),
                "plain_build": median_json(row.plain[1]),
                "plain_release": median_json(row.plain[2]),
                "added_check_s": row.added_check(),
                "added_build_s": row.added_build(),
                "added_release_s": row.added_release(),
                "added_build_cpu_s": row.added_build_cpu(),
                "added_build_ms_per_node": row.added_build() * 1000.0 / as_f64(row.nodes),
                "expansion": expansion,
            })
        })
        .collect();
    let value = serde_json::json!({
        "benchmark": "compile_time",
        "description": "rebuild of one crate holding a workflow! of N nodes (wf) and of the same calls as plain Rust (plain), with cargo check, a debug build and a release build: medians of the wall and CPU time of cargo, CARGO_INCREMENTAL=0; added = wf - plain",
        "rustc": rustc,
        "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "repetitions": reps,
        "rows": rows,
    });
    let mut text = serde_json::to_string_pretty(&value).expect("JSON");
    text.push('\n');
    text
}
