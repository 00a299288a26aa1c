//! The scheduler's overhead: the same graphs run by the executor `workflow!` generates and
//! by hand-written tokio code, with the same parallelism.
//!
//! Shapes (generated into `generated/graphs.rs` by `tests/bench_graphs.rs`, from one
//! description per shape, so the generated workflow and both hand-written versions have
//! the same nodes, edges and joins):
//! - `chain_100`: 100 no-op steps, each reading the previous output;
//! - `fanout_1000`: one root, 1000 no-op leaves reading it, joined by a tree of `sum10`
//!   steps (a step cannot sensibly take 1000 inputs): 100 sums of 10 leaves, 10 sums of
//!   those, one final sum; 1112 steps. The hand-written versions do exactly the same joins;
//! - `pipeline`: the content pipeline's shape (research -> post -> {linkedin, twitter,
//!   email}; twitter -> meta; all four -> check -> publish), 8 no-op steps, one run per
//!   iteration.
//!
//! Pairs, per shape (group `<shape>`, throughput in steps, so criterion reports per step):
//! - `generated_tasks` (`Parallelism::Tasks`, the default) vs `tokio_spawn`: one tokio task
//!   per step; the hand-written tasks are spawned up front and each awaits its inputs'
//!   `JoinHandle`s (a `Shared` one when several steps read it);
//! - `generated_single_task` (`Parallelism::SingleTask`) vs `tokio_single_task`: every
//!   step's future is polled from one task, no spawn (`tokio::join!` where a step has
//!   several inputs).
//!
//! Every variant runs on a multi-thread tokio runtime with 2 workers, its runs awaited back
//! to back from one task on a worker (see `measure`): the generated scheduler (`run` drives
//! the run in the calling task) or the hand-written driver lives on a worker, as in a
//! server. Nobody listens to the generated runs' events; they are recorded all the same.
// The single-task chain's futures name each other's types 100 deep; proving the whole run
// `Send` needs a deeper trait-solver recursion than the default 128.
#![recursion_limit = "512"]
#![allow(
    // Step inputs are taken by reference: that is the `#[step]` contract.
    clippy::trivially_copy_pass_by_ref,
    // `sum10` joins ten inputs: that is the point of it.
    clippy::too_many_arguments
)]

use std::future::{Future, ready};
use std::hint::black_box;
use std::pin::pin;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{Bencher, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use futures_util::future::{Map, Shared};
use tokio::runtime::Runtime;
use tokio::task::{JoinError, JoinHandle};
use workflow::prelude::*;

include!("common/shapes.rs");

// ---- Measurements. ----

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

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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

fn overhead(c: &mut Criterion) {
    let rt = runtime();
    shape!(
        c,
        &rt,
        "chain_100",
        100,
        Chain100,
        chain_100_tokio_spawn,
        chain_100_tokio_single_task
    );
    shape!(
        c,
        &rt,
        "fanout_1000",
        1112,
        Fanout1000,
        fanout_1000_tokio_spawn,
        fanout_1000_tokio_single_task
    );
    shape!(
        c,
        &rt,
        "pipeline",
        8,
        Pipeline,
        pipeline_tokio_spawn,
        pipeline_tokio_single_task
    );
}

criterion_group!(benches, overhead);
criterion_main!(benches);
