// How the `overhead` and `large` benchmarks measure a shape; `include!`d at their roots.

/// Awaits `run()` `iters` times back to back inside one task spawned on the runtime, and
/// times that loop from inside the task: each run then starts from a worker thread, as it
/// does in a server, and no run pays for waking criterion's `block_on` thread.
fn measure<F, Fut>(b: &mut Bencher<'_>, rt: &Runtime, run: F)
where
    F: Fn() -> Fut + Copy + Send + 'static,
    Fut: Future<Output = u64> + Send,
{
    b.to_async(rt).iter_custom(|iters| async move {
        tokio::spawn(async move {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(run().await);
            }
            start.elapsed()
        })
        .await
        .expect("the measuring task panicked")
    });
}

fn single_task() -> RunOptions {
    RunOptions::new().parallelism(Parallelism::SingleTask)
}

/// The worker threads of the runtime the shapes run on: 2, or `WORKFLOW_BENCH_WORKERS` (to
/// see, for example, what a step costs where no thread waits for another).
fn workers() -> usize {
    std::env::var("WORKFLOW_BENCH_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2)
}

fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// One group per shape: its four variants, checked to agree before they are measured.
macro_rules! shape {
    ($c:expr, $rt:expr, $group:literal, $steps:expr, $ty:ident, $spawn:ident, $single:ident) => {{
        let rt: &Runtime = $rt;
        let tasks: &'static $ty = Box::leak(Box::new($ty::new()));
        let single: &'static $ty = Box::leak(Box::new($ty::new().with_options(single_task())));
        let generated_tasks =
            move || async move { tasks.run(black_box(1)).await.expect("the run succeeds") };
        let tokio_spawn = || $spawn(black_box(1));
        let generated_single_task =
            move || async move { single.run(black_box(1)).await.expect("the run succeeds") };
        let tokio_single_task = || $single(black_box(1));
        compare(
            $c,
            rt,
            ($group, $steps, 20),
            (
                ("generated_tasks", generated_tasks),
                ("tokio_spawn", tokio_spawn),
                ("generated_single_task", generated_single_task),
                ("tokio_single_task", tokio_single_task),
            ),
        );
    }};
}

/// One variant of a shape: a function that makes a run's future.
trait Variant: Copy + Send + 'static {
    type Run: Future<Output = u64> + Send;
    fn start(&self) -> Self::Run;
}

impl<F, Fut> Variant for F
where
    F: Fn() -> Fut + Copy + Send + 'static,
    Fut: Future<Output = u64> + Send,
{
    type Run = Fut;
    fn start(&self) -> Fut {
        self()
    }
}

/// Four named variants of one shape.
type Variants<'a, A, B, C, D> = ((&'a str, A), (&'a str, B), (&'a str, C), (&'a str, D));

/// Checks that the four variants of a shape agree, then measures them, each under its
/// name, as group `name` (`steps` per run, `samples` samples).
fn compare<A: Variant, B: Variant, C: Variant, D: Variant>(
    c: &mut Criterion,
    rt: &Runtime,
    (name, steps, samples): (&str, u64, usize),
    (a, b, cc, d): Variants<'_, A, B, C, D>,
) {
    let outputs = rt.block_on(async {
        let (ra, rb, rc, rd) = (a.1, b.1, cc.1, d.1);
        tokio::spawn(async move {
            [
                ra.start().await,
                rb.start().await,
                rc.start().await,
                rd.start().await,
            ]
        })
        .await
        .expect("the runs succeed")
    });
    assert!(
        outputs.iter().all(|&output| output == outputs[0]),
        "{name}: the variants disagree: {outputs:?}"
    );
    let (ra, rb, rc, rd) = (a.1, b.1, cc.1, d.1);
    if !paired_only() {
        let mut group = c.benchmark_group(name);
        configure(&mut group, steps);
        group.sample_size(samples);
        group.bench_function(a.0, |bench| measure(bench, rt, move || ra.start()));
        group.bench_function(b.0, |bench| measure(bench, rt, move || rb.start()));
        group.bench_function(cc.0, |bench| measure(bench, rt, move || rc.start()));
        group.bench_function(d.0, |bench| measure(bench, rt, move || rd.start()));
        group.finish();
    }
    // Skipped in `cargo test --benches`, where the timings mean nothing, and for a group
    // that a filter given to criterion does not name.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    if !is_bench_run() || !(filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
    {
        return;
    }
    let ratios = serde_json::json!({
        format!("{}/{}", a.0, b.0): paired_ratio(rt, ra, rb),
        format!("{}/{}", cc.0, d.0): paired_ratio(rt, rc, rd),
    });
    write_paired(name, &ratios);
}

/// Whether criterion is measuring (`cargo bench`), not only checking that the benchmarks
/// run (`cargo test --benches`).
fn is_bench_run() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// Whether only the paired ratios are wanted (`WORKFLOW_BENCH_PAIRED=only`): a quick check
/// of an optimisation, without criterion's samples.
fn paired_only() -> bool {
    std::env::var_os("WORKFLOW_BENCH_PAIRED").is_some_and(|v| v == "only")
}

/// How many rounds a paired ratio is the median of.
const PAIRED_ROUNDS: usize = 31;

/// The ratio of `generated`'s time to `baseline`'s, measured in pairs: each round times a
/// batch of one right after a batch of the other (the order alternating), on the same
/// runtime, and the ratio is the median of the rounds' ratios. Criterion's medians come
/// from windows seconds apart, and on a shared machine the load moves between windows;
/// a pair of batches a few milliseconds apart sees the same load.
fn paired_ratio<A: Variant, B: Variant>(rt: &Runtime, generated: A, baseline: B) -> f64 {
    rt.block_on(async move {
        tokio::spawn(async move {
            // Batches of about 10 ms of the slower variant.
            let once = time_runs(generated, 1)
                .await
                .max(time_runs(baseline, 1).await);
            let runs =
                (Duration::from_millis(10).as_nanos() / once.as_nanos().max(1)).clamp(1, 100_000);
            let runs = u32::try_from(runs).unwrap_or(1);
            let mut ratios = Vec::with_capacity(PAIRED_ROUNDS);
            for round in 0..PAIRED_ROUNDS {
                let (g, b) = if round % 2 == 0 {
                    let g = warm_runs(generated, runs).await;
                    (g, warm_runs(baseline, runs).await)
                } else {
                    let b = warm_runs(baseline, runs).await;
                    (warm_runs(generated, runs).await, b)
                };
                ratios.push(g.as_secs_f64() / b.as_secs_f64());
                if paired_only() {
                    let per_run = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(runs);
                    println!(
                        "  round {round}: {:.1} / {:.1} µs a run",
                        per_run(g),
                        per_run(b)
                    );
                }
            }
            ratios.sort_by(f64::total_cmp);
            ratios[ratios.len() / 2]
        })
        .await
        .expect("the measuring task panicked")
    })
}

/// The time of `runs` runs of `variant` after one untimed run: the first run after the
/// other variant's finds the allocator's free lists and the caches holding the other's
/// memory (a fan-out of 1,000 steps allocates about a megabyte), which a batch of a few
/// runs would otherwise count against whichever variant uses more.
async fn warm_runs<V: Variant>(variant: V, runs: u32) -> Duration {
    black_box(variant.start().await);
    time_runs(variant, runs).await
}

/// The time of `runs` runs of `variant`, back to back.
async fn time_runs<V: Variant>(variant: V, runs: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..runs {
        black_box(variant.start().await);
    }
    start.elapsed()
}

/// Writes the paired ratios of group `name` next to criterion's figures, where
/// `cargo bench --bench report` reads them.
fn write_paired(name: &str, ratios: &serde_json::Value) {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
            std::path::PathBuf::from,
        )
        .join("criterion")
        .join(name);
    std::fs::create_dir_all(&dir).expect("create criterion's directory");
    std::fs::write(dir.join("paired.json"), ratios.to_string()).expect("write paired ratios");
    println!("{name}: paired ratios {ratios}");
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>, steps: u64) {
    group
        .throughput(Throughput::Elements(steps))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}
