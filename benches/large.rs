//! The largest shape, in a benchmark of its own because its 11,112-node workflow takes
//! minutes to build in release: one root, 10,000 leaves reading it, joined by a tree of
//! 1,111 `sum10` steps (the `overhead` benchmark's fan-outs, at 10,000).
//!
//! - `fanout_10000`: no-op leaves, the generated executor against the same graph by hand,
//!   in both modes, as in `overhead.rs` (the hand-written versions are loops here: written
//!   out as straight-line code, 11,112 steps would take the optimiser many more minutes);
//! - `scaling_fanout_10000`: each leaf makes `WORK` rounds of arithmetic (about a
//!   microsecond), on a runtime of 1 and of 2 worker threads: how the generated executor
//!   and hand-written tasks use a second core.
//!
//! `cargo bench --bench large`.
#![allow(
    // Of the steps in `common/shapes.rs`, the fan-out's.
    dead_code,
    // Step inputs are taken by reference: that is the `#[step]` contract.
    clippy::trivially_copy_pass_by_ref,
    // `sum10` joins ten inputs: that is the point of it.
    clippy::too_many_arguments
)]

use std::future::{Future, ready};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{Bencher, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use futures_util::future::{Map, Shared, join_all};
use tokio::runtime::Runtime;
use tokio::task::{JoinError, JoinHandle};
use workflow::prelude::*;

include!("common/shapes.rs");
include!("common/measure.rs");
include!("generated/large.rs");

// ---- The fan-out by hand, as loops. ----

/// Ten inputs, in turn (for the sums of a fan-out by hand).
async fn sum_after(inputs: impl IntoIterator<Item = impl Future<Output = u64>>) -> u64 {
    let mut values = [0; 10];
    for (value, input) in values.iter_mut().zip(inputs) {
        *value = input.await;
    }
    let v = &values;
    sum10(
        &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9],
    )
}

/// `fanout_10000` by hand: a task per step, every one spawned up front, each awaiting its
/// inputs' tasks; the root's is shared by the 10,000 leaves, the sums join ten each.
fn fanout_10000_tokio_spawn(x: u64) -> Task<u64> {
    let root = shared_task(step_after1(inc, ready(x)));
    let mut level: Vec<Task<u64>> = (0..10_000)
        .map(|_| task(step_after1(leaf, root.clone())))
        .collect();
    while level.len() > 1 {
        let mut inputs = level.into_iter();
        level = Vec::new();
        loop {
            let ten: Vec<Task<u64>> = inputs.by_ref().take(10).collect();
            if ten.is_empty() {
                break;
            }
            level.push(task(sum_after(ten)));
        }
    }
    level.pop().expect("one total")
}

/// `fanout_10000` by hand in one task: the leaves polled together, then each level of sums.
async fn fanout_10000_tokio_single_task(x: u64) -> u64 {
    let root = step_after1(inc, ready(x)).await;
    let mut level = join_all((0..10_000).map(|_| step_after1(leaf, ready(root)))).await;
    while level.len() > 1 {
        level = join_all(
            level
                .chunks(10)
                .map(|ten| sum_after(ten.iter().copied().map(ready))),
        )
        .await;
    }
    level[0]
}

fn fanout(c: &mut Criterion) {
    let rt = runtime(workers());
    shape!(
        c,
        &rt,
        "fanout_10000",
        11_112,
        Fanout10000,
        fanout_10000_tokio_spawn,
        fanout_10000_tokio_single_task
    );
}

/// Rounds of arithmetic per leaf in `scaling`: a microsecond or so of work.
const WORK: u32 = 1000;

/// The fan-out of 10,000 leaves, each doing about a microsecond of arithmetic, on a runtime
/// of 1 and of 2 worker threads: how the generated executor and hand-written tasks use a
/// second core.
fn scaling(c: &mut Criterion) {
    LEAF_WORK.store(WORK, std::sync::atomic::Ordering::Relaxed);
    let workflow: &'static Fanout10000 = Box::leak(Box::new(Fanout10000::new()));
    let generated =
        move || async move { workflow.run(black_box(1)).await.expect("the run succeeds") };
    let by_hand = || fanout_10000_tokio_spawn(black_box(1));
    let mut group = c.benchmark_group("scaling_fanout_10000");
    configure(&mut group, 11_112);
    for workers in [1, 2] {
        let rt = runtime(workers);
        let outputs = rt.block_on(async {
            tokio::spawn(async move { [generated().await, by_hand().await] })
                .await
                .expect("the runs succeed")
        });
        assert_eq!(outputs[0], outputs[1]);
        group.bench_function(format!("generated_tasks/{workers}"), |b| {
            measure(b, &rt, generated);
        });
        group.bench_function(format!("tokio_spawn/{workers}"), |b| {
            measure(b, &rt, by_hand);
        });
    }
    group.finish();
    LEAF_WORK.store(0, std::sync::atomic::Ordering::Relaxed);
}

criterion_group!(benches, fanout, scaling);
criterion_main!(benches);
