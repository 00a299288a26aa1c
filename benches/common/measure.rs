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
        let outputs = rt.block_on(async {
            tokio::spawn(async move {
                [
                    generated_tasks().await,
                    tokio_spawn().await,
                    generated_single_task().await,
                    tokio_single_task().await,
                ]
            })
            .await
            .expect("the runs succeed")
        });
        assert!(
            outputs.iter().all(|&output| output == outputs[0]),
            "{}: the variants disagree: {outputs:?}",
            $group
        );
        let mut group = $c.benchmark_group($group);
        configure(&mut group, $steps);
        group.bench_function("generated_tasks", |b| measure(b, rt, generated_tasks));
        group.bench_function("tokio_spawn", |b| measure(b, rt, tokio_spawn));
        group.bench_function("generated_single_task", |b| {
            measure(b, rt, generated_single_task);
        });
        group.bench_function("tokio_single_task", |b| measure(b, rt, tokio_single_task));
        group.finish();
    }};
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>, steps: u64) {
    group
        .throughput(Throughput::Elements(steps))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

