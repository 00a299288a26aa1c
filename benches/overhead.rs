//! The scheduler's overhead: the same graphs run by the executor `workflow!` generates and
//! by hand-written tokio code, with the same parallelism.
//!
//! Shapes (generated into `generated/graphs.rs` by `tests/bench_graphs.rs`, from one
//! description per shape, so the generated workflow and both hand-written versions have
//! the same nodes, edges and joins):
//! - `chain_10`, `chain_100`, `chain_1000`: no-op steps, each reading the previous output;
//! - `fanout_10`, `fanout_100`, `fanout_1000`: one root, N no-op leaves reading it, joined
//!   by a tree of `sum10` steps (a step cannot sensibly take 1000 inputs): for 1000, 100
//!   sums of 10 leaves, 10 sums of those, one final sum, 1112 steps. The hand-written
//!   versions do exactly the same joins. (`fanout_10000` is the `large` benchmark's.);
//! - `pipeline`: the content pipeline's shape (research -> post -> {linkedin, twitter,
//!   email}; twitter -> meta; all four -> check -> publish), 8 no-op steps, one run per
//!   iteration;
//! - `pipeline_x10000`: the same, 10,000 runs started at once (each in a task of its own),
//!   then awaited;
//! - `state_loop_1000`: a state graph whose one node routes back to itself 1,000 times,
//!   against the same loop by hand (`generated` vs `by_hand`).
//!
//! Pairs, per shape (group `<shape>`, throughput in steps, so criterion reports per step):
//! - `generated_tasks` (`Parallelism::Tasks`, the default) vs `tokio_spawn`: one tokio task
//!   per step; the hand-written tasks are spawned up front and each awaits its inputs'
//!   `JoinHandle`s (a `Shared` one when several steps read it);
//! - `generated_single_task` (`Parallelism::SingleTask`) vs `tokio_single_task`: every
//!   step's future is polled from one task, no spawn (`tokio::join!` where a step has
//!   several inputs; a chain by hand is plain sequential `.await`s).
//!
//! Every variant runs on a multi-thread tokio runtime with 2 workers, its runs awaited back
//! to back from one task on a worker (see `measure`): the generated scheduler (`run` drives
//! the run in the calling task) or the hand-written driver lives on a worker, as in a
//! server. Nobody listens to the generated runs' events; they are recorded all the same.
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
include!("common/measure.rs");
include!("generated/graphs.rs");
include!("common/rounds.rs");

// ---- Measurements. ----

fn overhead(c: &mut Criterion) {
    let rt = runtime(workers());
    shape!(
        c,
        &rt,
        "chain_10",
        10,
        Chain10,
        chain_10_tokio_spawn,
        chain_10_tokio_single_task
    );
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
        "chain_1000",
        1000,
        Chain1000,
        chain_1000_tokio_spawn,
        chain_1000_tokio_single_task
    );
    shape!(
        c,
        &rt,
        "fanout_10",
        12,
        Fanout10,
        fanout_10_tokio_spawn,
        fanout_10_tokio_single_task
    );
    shape!(
        c,
        &rt,
        "fanout_100",
        112,
        Fanout100,
        fanout_100_tokio_spawn,
        fanout_100_tokio_single_task
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
    pipeline_runs(c, &rt);
    state_loop(c, &rt);
}

/// How many runs `pipeline_x10000` starts at once.
const RUNS: u64 = 10_000;

/// The content pipeline's shape, 10,000 runs at once: each run started (spawned) before
/// any is awaited, against 10,000 hand-written runs spawned the same way.
fn pipeline_runs(c: &mut Criterion, rt: &Runtime) {
    let tasks: &'static Pipeline = Box::leak(Box::new(Pipeline::new()));
    let single: &'static Pipeline =
        Box::leak(Box::new(Pipeline::new().with_options(single_task())));
    let generated = |workflow: &'static Pipeline| {
        move || async move {
            let handles: Vec<_> = (0..RUNS).map(|i| workflow.start(i)).collect();
            let mut sum = 0_u64;
            for handle in handles {
                sum = sum.wrapping_add(handle.await.expect("the run succeeds"));
            }
            sum
        }
    };
    let tokio_spawn = || async {
        let runs: Vec<_> = (0..RUNS).map(pipeline_tokio_spawn).collect();
        let mut sum = 0_u64;
        for run in runs {
            sum = sum.wrapping_add(run.await);
        }
        sum
    };
    let tokio_single_task = || async {
        let runs: Vec<_> = (0..RUNS)
            .map(|i| tokio::spawn(pipeline_tokio_single_task(i)))
            .collect();
        let mut sum = 0_u64;
        for run in runs {
            sum = sum.wrapping_add(joined(run.await));
        }
        sum
    };
    compare(
        c,
        rt,
        ("pipeline_x10000", 8 * RUNS, 10),
        (
            ("generated_tasks", generated(tasks)),
            ("tokio_spawn", tokio_spawn),
            ("generated_single_task", generated(single)),
            ("tokio_single_task", tokio_single_task),
        ),
    );
}

/// How many rounds `state_loop_1000` makes.
const ROUNDS: u64 = 1000;

/// A state graph looping 1,000 rounds over its state, against the same loop by hand.
fn state_loop(c: &mut Criterion, rt: &Runtime) {
    let generated: &'static Loop = Box::leak(Box::new(
        Loop::new().with_options(RunOptions::new().max_steps(2 * 1000)),
    ));
    let generated = move || async move {
        let rounds = Rounds {
            done: 0,
            goal: black_box(ROUNDS),
        };
        generated.run(rounds).await.expect("the run succeeds").done
    };
    let by_hand = || async {
        let mut rounds = Rounds {
            done: 0,
            goal: black_box(ROUNDS),
        };
        // Opaque to the optimiser, which would otherwise compute the loop's end at once.
        while black_box(round(black_box(&mut rounds))) {}
        rounds.done
    };
    let outputs = rt.block_on(async { [generated().await, by_hand().await] });
    assert_eq!(outputs, [ROUNDS; 2]);
    let mut group = c.benchmark_group("state_loop_1000");
    configure(&mut group, ROUNDS);
    group.bench_function("generated", |b| measure(b, rt, generated));
    group.bench_function("by_hand", |b| measure(b, rt, by_hand));
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
