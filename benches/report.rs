//! The benchmarks' figures as tables and plots: reads what `overhead` left in criterion's
//! directory and what `compile_time` wrote to `docs/bench/compile_time.json`, prints the
//! tables of BENCHMARKS.md, and writes
//! - `docs/bench/overhead.json`: per shape and variant, the median time per step, the
//!   overhead per step and the ratio against the hand-written baseline of the same run;
//! - `docs/bench/overhead.svg`: time per step against graph size, generated and by hand,
//!   for the chain and the fan-out, in both modes (log-log);
//! - `docs/bench/compile_time.svg`: the build time a workflow adds against its number of
//!   nodes, for `cargo check`, a debug and a release build.
//!
//! Run it after the others (`benches/run` does: `cargo bench --bench report`). A figure
//! that is missing (a benchmark not run) is left out of the tables and plots, not invented.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The shapes of the `overhead` benchmark: group, steps per run, family, size on the plot.
const SHAPES: [(&str, f64, &str, f64); 11] = [
    ("chain_10", 10.0, "chain", 10.0),
    ("chain_100", 100.0, "chain", 100.0),
    ("chain_1000", 1000.0, "chain", 1000.0),
    ("fanout_10", 12.0, "fan-out", 10.0),
    ("fanout_100", 112.0, "fan-out", 100.0),
    ("fanout_1000", 1112.0, "fan-out", 1000.0),
    ("fanout_10000", 11_112.0, "fan-out", 10_000.0),
    ("pipeline", 8.0, "pipeline", 8.0),
    (
        "pipeline_x10000",
        80_000.0,
        "pipeline x 10,000 runs",
        10_000.0,
    ),
    ("state_loop_1000", 1000.0, "state-graph loop", 1000.0),
    ("scaling_fanout_10000", 11_112.0, "scaling", 10_000.0),
];

/// The variants compared: (generated, its baseline, the mode's name).
const PAIRS: [(&str, &str, &str); 3] = [
    ("generated_tasks", "tokio_spawn", "tasks"),
    ("generated_single_task", "tokio_single_task", "one task"),
    ("generated", "by_hand", "one node at a time"),
];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let criterion = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("criterion");
    let docs = root.join("docs/bench");
    std::fs::create_dir_all(&docs).expect("create docs/bench");

    let rows = overhead_rows(&criterion);
    println!("{}", overhead_table(&rows));
    std::fs::write(docs.join("overhead.json"), overhead_json(&rows)).expect("write JSON");
    std::fs::write(docs.join("overhead.svg"), overhead_plot(&rows)).expect("write a plot");

    if let Some(scaling) = scaling_table(&criterion) {
        println!("{scaling}");
    }

    match std::fs::read_to_string(docs.join("compile_time.json")) {
        Ok(text) => {
            let figures: Value = serde_json::from_str(&text).expect("compile_time.json: JSON");
            std::fs::write(docs.join("compile_time.svg"), compile_time_plot(&figures))
                .expect("write a plot");
        }
        Err(_) => {
            eprintln!("no docs/bench/compile_time.json: run `cargo bench --bench compile_time`");
        }
    }
    println!("written to {}", docs.display());
}

/// The median of one criterion benchmark, in nanoseconds per iteration.
fn median(criterion: &Path, group: &str, function: &str) -> Option<f64> {
    let path = criterion
        .join(group)
        .join(function)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    value["median"]["point_estimate"].as_f64()
}

/// The ratio of `generated` to `baseline` that the benchmark measured in alternating
/// batches, if it did (`<group>/paired.json`).
fn paired(criterion: &Path, group: &str, generated: &str, baseline: &str) -> Option<f64> {
    let text = std::fs::read_to_string(criterion.join(group).join("paired.json")).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    value[format!("{generated}/{baseline}")].as_f64()
}

/// One shape in one mode: nanoseconds per step, generated and by hand.
struct Row {
    group: &'static str,
    family: &'static str,
    size: f64,
    mode: &'static str,
    generated: f64,
    baseline: f64,
    /// The ratio measured in alternating batches (`paired.json`), when there is one.
    paired: Option<f64>,
}

impl Row {
    fn overhead(&self) -> f64 {
        self.generated - self.baseline
    }

    /// The ratio of the medians.
    fn median_ratio(&self) -> f64 {
        self.generated / self.baseline
    }

    /// The paired ratio where there is one, else the ratio of the medians.
    fn ratio(&self) -> f64 {
        self.paired.unwrap_or_else(|| self.median_ratio())
    }
}

fn overhead_rows(criterion: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for (group, steps, family, size) in SHAPES {
        if group.starts_with("scaling") {
            continue;
        }
        for (generated, baseline, mode) in PAIRS {
            let (Some(g), Some(b)) = (
                median(criterion, group, generated),
                median(criterion, group, baseline),
            ) else {
                continue;
            };
            rows.push(Row {
                group,
                family,
                size,
                mode,
                generated: g / steps,
                baseline: b / steps,
                paired: paired(criterion, group, generated, baseline),
            });
        }
    }
    rows
}

fn overhead_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| shape | mode | generated | hand-written | overhead | ratio of medians | paired ratio |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} ns | {:.0} ns | {:.2} µs | {:.2} | {} |",
            row.group.replace('_', " "),
            row.mode,
            row.generated,
            row.baseline,
            row.overhead() / 1000.0,
            row.median_ratio(),
            row.paired
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
        );
    }
    out
}

fn overhead_json(rows: &[Row]) -> String {
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "shape": row.group,
                "mode": row.mode,
                "generated_ns_per_step": row.generated,
                "hand_written_ns_per_step": row.baseline,
                "overhead_ns_per_step": row.overhead(),
                "ratio_of_medians": row.median_ratio(),
                "paired_ratio": row.paired,
                "ratio": row.ratio(),
            })
        })
        .collect();
    let value = serde_json::json!({
        "benchmark": "overhead",
        "description": "criterion medians per step, generated executor against the same graph by hand with tokio, one run; paired_ratio: median of ratios of alternating batches; ratio: the paired one where measured",
        "rows": rows,
    });
    let mut text = serde_json::to_string_pretty(&value).expect("JSON");
    text.push('\n');
    text
}

/// The fan-out of 10,000 CPU-light steps on 1 and 2 worker threads.
fn scaling_table(criterion: &Path) -> Option<String> {
    let group = "scaling_fanout_10000";
    let time = |function: &str| median(criterion, group, function);
    let mut out = String::from(
        "| variant | 1 worker | 2 workers | speed-up |\n| --- | ---: | ---: | ---: |\n",
    );
    for (function, name) in [
        ("generated_tasks", "generated"),
        ("tokio_spawn", "hand-written"),
    ] {
        // Criterion keeps `name/1` in a directory `name_1`.
        let one = time(&format!("{function}_1"))?;
        let two = time(&format!("{function}_2"))?;
        let _ = writeln!(
            out,
            "| {name} | {:.2} ms | {:.2} ms | {:.2} |",
            one / 1e6,
            two / 1e6,
            one / two
        );
    }
    Some(out)
}

// ---- Plots: hand-written SVG, log-log line charts (no plotting crate needed). ----

/// One line of a chart: its name, colour, dash pattern and points.
struct Line {
    name: String,
    colour: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 270.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// A chart of `lines`; `labels` and the log scales are (x, y).
fn chart(
    title: &str,
    labels: (&str, &str),
    (log_x, log_y): (bool, bool),
    lines: &[Line],
) -> String {
    let (x_label, y_label) = labels;
    let points = || lines.iter().flat_map(|line| line.points.iter().copied());
    let (mut x_min, mut x_max) = (f64::MAX, f64::MIN);
    let (mut y_min, mut y_max) = (f64::MAX, f64::MIN);
    for (x, y) in points() {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if x_min > x_max {
        (x_min, x_max, y_min, y_max) = (1.0, 10.0, 1.0, 10.0);
    }
    let x_axis = if log_x {
        Axis::log(x_min, x_max)
    } else {
        Axis::linear(0.0, x_max)
    };
    let y_axis = if log_y {
        Axis::log(y_min, y_max)
    } else {
        Axis::linear(0.0, y_max)
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + x_axis.at(x) * plot_w;
    let py = |y: f64| TOP + (1.0 - y_axis.at(y)) * plot_h;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">{}</text>\n",
        LEFT + plot_w / 2.0,
        escape(title)
    );
    for tick in x_axis.ticks() {
        let x = px(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + plot_h,
            TOP + plot_h + 16.0,
            number(tick)
        );
    }
    for tick in y_axis.ticks() {
        let y = py(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            number(tick)
        );
    }
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#333\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
         <text transform=\"translate(18 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        escape(x_label),
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (i, line) in lines.iter().enumerate() {
        let dash = line.dash();
        let path: Vec<String> = line
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash}/>",
            path.join(" "),
            line.colour
        );
        for &(x, y) in &line.points {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                px(x),
                py(y),
                line.colour
            );
        }
        legend(&mut svg, i, line);
    }
    svg.push_str("</svg>\n");
    svg
}

/// The `i`-th entry of the legend, right of the plot.
fn legend(svg: &mut String, i: usize, line: &Line) {
    #[allow(clippy::cast_precision_loss)] // a handful of lines
    let y = TOP + 10.0 + 20.0 * i as f64;
    let x = WIDTH - RIGHT + 15.0;
    let _ = writeln!(
        svg,
        "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"2\"{}/>\
         <text x=\"{}\" y=\"{}\">{}</text>",
        x + 24.0,
        line.colour,
        line.dash(),
        x + 30.0,
        y + 4.0,
        escape(&line.name)
    );
}

impl Line {
    /// The SVG attribute of a dashed line.
    fn dash(&self) -> &'static str {
        if self.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        }
    }
}

/// A linear or logarithmic axis from `min` to `max`.
struct Axis {
    log: bool,
    min: f64,
    max: f64,
}

impl Axis {
    /// Whole decades around the values.
    fn log(min: f64, max: f64) -> Self {
        let min = 10f64.powf(min.max(1e-9).log10().floor());
        let max = 10f64.powf(max.max(min * 10.0).log10().ceil());
        Self {
            log: true,
            min,
            max,
        }
    }

    fn linear(min: f64, max: f64) -> Self {
        let step = nice_step(max - min);
        Self {
            log: false,
            min,
            max: (max / step).ceil() * step,
        }
    }

    /// Where `value` falls, from 0 (min) to 1 (max).
    fn at(&self, value: f64) -> f64 {
        if self.log {
            (value.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (value - self.min) / (self.max - self.min)
        }
    }

    fn ticks(&self) -> Vec<f64> {
        let mut ticks = Vec::new();
        if self.log {
            let mut tick = self.min;
            while tick <= self.max * 1.000_001 {
                ticks.push(tick);
                tick *= 10.0;
            }
        } else {
            let step = nice_step(self.max - self.min);
            let mut tick = self.min;
            while tick <= self.max + step * 1e-6 {
                ticks.push(tick);
                tick += step;
            }
        }
        ticks
    }
}

/// A round step for about five ticks over `range`.
fn nice_step(range: f64) -> f64 {
    let raw = (range / 5.0).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|&m| m * magnitude >= raw)
        .unwrap_or(10.0);
    step * magnitude
}

/// A tick label: `10`, `1000`, `10k`, `0.5`.
fn number(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{}k", value / 1000.0)
    } else if value >= 1.0 || value == 0.0 {
        format!("{value}")
    } else {
        format!("{value:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Time per step against graph size: the chain and the fan-out, generated and by hand, in
/// both modes.
fn overhead_plot(rows: &[Row]) -> String {
    let mut lines = Vec::new();
    let colours = [("chain", "#1f77b4"), ("fan-out", "#d62728")];
    for (family, colour) in colours {
        for (mode, dashed) in [("tasks", false), ("one task", true)] {
            let of = |pick: fn(&Row) -> f64| -> Vec<(f64, f64)> {
                rows.iter()
                    .filter(|row| row.family == family && row.mode == mode)
                    .map(|row| (row.size, pick(row)))
                    .collect()
            };
            let generated = of(|row| row.generated);
            if generated.is_empty() {
                continue;
            }
            lines.push(Line {
                name: format!("{family}, {mode}"),
                colour,
                dashed,
                points: generated,
            });
            lines.push(Line {
                name: format!("{family}, {mode}, by hand"),
                colour: if family == "chain" {
                    "#9ecae1"
                } else {
                    "#fc9272"
                },
                dashed,
                points: of(|row| row.baseline.max(1.0)),
            });
        }
    }
    chart(
        "Time per step: generated executor vs hand-written tokio",
        (
            "steps in the graph: chain length, fan-out width (log)",
            "ns per step (log)",
        ),
        (true, true),
        &lines,
    )
}

/// Added build time against node count, for `cargo check`, a debug and a release build.
fn compile_time_plot(figures: &Value) -> String {
    let rows = figures["rows"].as_array().cloned().unwrap_or_default();
    let series = |key: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|row| Some((row["nodes"].as_f64()?, row[key].as_f64()?)))
            .collect()
    };
    let lines = [
        Line {
            name: "added to a debug build".to_owned(),
            colour: "#1f77b4",
            dashed: false,
            points: series("added_build_s"),
        },
        Line {
            name: "added to a release build".to_owned(),
            colour: "#d62728",
            dashed: false,
            points: series("added_release_s"),
        },
        Line {
            name: "added to cargo check".to_owned(),
            colour: "#2ca02c",
            dashed: false,
            points: series("added_check_s"),
        },
    ];
    chart(
        "Build time a workflow! adds, against its nodes",
        ("nodes in the workflow", "seconds added (wall)"),
        (false, false),
        &lines,
    )
}
