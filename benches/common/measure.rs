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
    let mut group = c.benchmark_group(name);
    configure(&mut group, steps);
    group.sample_size(samples);
    let (ra, rb, rc, rd) = (a.1, b.1, cc.1, d.1);
    group.bench_function(a.0, |bench| measure(bench, rt, move || ra.start()));
    group.bench_function(b.0, |bench| measure(bench, rt, move || rb.start()));
    group.bench_function(cc.0, |bench| measure(bench, rt, move || rc.start()));
    group.bench_function(d.0, |bench| measure(bench, rt, move || rd.start()));
    group.finish();
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>, steps: u64) {
    group
        .throughput(Throughput::Elements(steps))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

