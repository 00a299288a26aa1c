//! Allocations per step of the scheduler, counted by the global allocator: a guard against
//! per-step cost regressions that does not depend on timing, so CI can run it anywhere.
//!
//! Each shape runs at two sizes, N and 2N steps, on a current-thread tokio runtime (every
//! task runs on the test's thread, in an order that does not depend on thread scheduling).
//! The difference between the two runs' counts, divided by the difference in steps, is
//! the cost of one more step: what every run pays once (its id, its event log, the
//! runtime's bookkeeping) cancels out. The counts are exact: the same runs are measured
//! twice and must count the same.
//!
//! Each figure is checked against a budget about a quarter above what it measured, so a
//! change that doubles the allocations per step fails, and snapshotted, so any change
//! shows in review. The byte figures include boxed futures and spawned tasks, whose sizes
//! depend on the compiler and the profile (a release build allocates up to 16 bytes less per
//! step): the snapshots hold the debug profile's figures (`cargo test`, as CI runs it);
//! refresh them deliberately when the toolchain changes.
#![allow(
    // Step inputs are taken by reference: that is the `#[step]` contract.
    clippy::trivially_copy_pass_by_ref,
    // `sum10` joins ten inputs: that is the point of it.
    clippy::too_many_arguments
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;

use tokio::runtime::Runtime;
use workflow::prelude::*;
use workflow::store::MemoryStore;

// ---- Counting allocations. ----

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The system allocator, counting the allocations (and reallocations) each thread makes
/// and the bytes they ask for.
struct Counting;

thread_local! {
    // Per thread, not process-wide: the test harness and the other tests of this binary
    // allocate on their own threads while a run is measured. A `const` initializer and a
    // type without `Drop` keep the counters from allocating or registering a destructor
    // themselves, so they can be used from inside the allocator.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn record(bytes: usize) {
    ALLOCATIONS.with(|count| count.set(count.get() + 1));
    BYTES.with(|count| count.set(count.get() + bytes as u64));
}

// A global allocator can only be written as an `unsafe impl`, and `unsafe_code` is denied
// workspace-wide. Every method counts, then passes its arguments unchanged to `System`, so
// the caller's guarantees are exactly what `System` requires.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations made by one thread: how many, and how many bytes they asked for (a
/// reallocation counts as one allocation of its new size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Count {
    allocations: u64,
    bytes: u64,
}

impl Count {
    /// What this thread has allocated so far.
    fn now() -> Self {
        Self {
            allocations: ALLOCATIONS.with(Cell::get),
            bytes: BYTES.with(Cell::get),
        }
    }

    /// What was allocated between `earlier` and `self`.
    fn since(self, earlier: Self) -> Self {
        Self {
            allocations: self.allocations - earlier.allocations,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

// ---- Measuring runs. ----

/// One size of a shape: how many steps its run executes, and how to make the run. `run`
/// builds the run's future (its workflow, its store) before counting starts; only driving
/// it is counted.
struct Size<F> {
    steps: u64,
    run: F,
}

/// What one more step allocates.
#[derive(Clone, Copy, Debug)]
struct PerStep {
    allocations: f64,
    bytes: f64,
}

/// The most a shape may allocate per step: what it measured, plus about a quarter. The
/// counts are exact, so the margin is not for noise: it lets a small change through and
/// fails one that doubles them.
struct Budget {
    allocations: f64,
    bytes: f64,
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

/// What one run allocates on this thread, from its first poll until it returns.
fn count<F, Fut>(runtime: &Runtime, run: &F) -> Count
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<u64, RunError>>,
{
    let run = run();
    let before = Count::now();
    let output = runtime.block_on(run);
    let after = Count::now();
    output.expect("the run succeeds");
    after.since(before)
}

/// Allocations per step: what a run of `large` allocates beyond a run of `small`, divided
/// by the steps it executes beyond it. Asserts that measuring again gives the same counts.
fn per_step<S, SFut, L, LFut>(small: &Size<S>, large: &Size<L>) -> PerStep
where
    S: Fn() -> SFut,
    SFut: Future<Output = Result<u64, RunError>>,
    L: Fn() -> LFut,
    LFut: Future<Output = Result<u64, RunError>>,
{
    let runtime = runtime();
    // The first runs allocate what is made once: thread-locals, `tracing` callsites, the
    // runtime's queues at the largest size the runs need. Later runs reuse all of it.
    count(&runtime, &small.run);
    count(&runtime, &large.run);
    let extra = || count(&runtime, &large.run).since(count(&runtime, &small.run));
    let first = extra();
    let second = extra();
    assert_eq!(
        first, second,
        "the same runs allocated differently: the measurement is not deterministic"
    );
    let steps = large.steps - small.steps;
    PerStep {
        allocations: ratio(first.allocations, steps),
        bytes: ratio(first.bytes, steps),
    }
}

// The counts stay far below 2^52, where an `f64` starts losing integers.
#[allow(clippy::cast_precision_loss)]
fn ratio(count: u64, steps: u64) -> f64 {
    count as f64 / steps as f64
}

/// Checks `measured` against `budget`, and snapshots it as `name`.
fn check(name: &str, measured: PerStep, budget: &Budget) {
    let report = format!(
        "allocations per step: {:.2}\nbytes per step: {:.2}",
        measured.allocations, measured.bytes
    );
    assert!(
        measured.allocations <= budget.allocations && measured.bytes <= budget.bytes,
        "{name} allocates more per step than its budget of {} allocations and {} bytes:\n{report}",
        budget.allocations,
        budget.bytes,
    );
    insta::assert_snapshot!(name, report);
}

fn options(parallelism: Parallelism) -> RunOptions {
    RunOptions::new().parallelism(parallelism)
}

// ---- The steps. ----

#[step]
fn inc(x: &u64) -> u64 {
    x.wrapping_add(1)
}

/// Waits once (wakes its task and returns pending, as a step that waits for I/O does),
/// then adds one.
#[step]
async fn inc_after_wait(x: &u64) -> u64 {
    let mut waited = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut waited, true) {
            std::task::Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
    x.wrapping_add(1)
}

#[step]
fn add(a: &u64, b: &u64) -> u64 {
    a.wrapping_add(*b)
}

#[step]
#[allow(clippy::many_single_char_names)]
fn sum10(
    a: &u64,
    b: &u64,
    c: &u64,
    d: &u64,
    e: &u64,
    f: &u64,
    g: &u64,
    h: &u64,
    i: &u64,
    j: &u64,
) -> u64 {
    [a, b, c, d, e, f, g, h, i, j]
        .into_iter()
        .fold(0, |sum, x| sum.wrapping_add(*x))
}

include!("../benches/common/rounds.rs");

// ---- The shapes, at N and 2N steps. ----

workflow! {
    /// A chain of 100 no-op steps, each reading the previous step's output.
    Chain100(x: u64) -> u64 {
        let s1 = inc(x); let s2 = inc(s1); let s3 = inc(s2); let s4 = inc(s3);
        let s5 = inc(s4); let s6 = inc(s5); let s7 = inc(s6); let s8 = inc(s7);
        let s9 = inc(s8); let s10 = inc(s9); let s11 = inc(s10); let s12 = inc(s11);
        let s13 = inc(s12); let s14 = inc(s13); let s15 = inc(s14); let s16 = inc(s15);
        let s17 = inc(s16); let s18 = inc(s17); let s19 = inc(s18); let s20 = inc(s19);
        let s21 = inc(s20); let s22 = inc(s21); let s23 = inc(s22); let s24 = inc(s23);
        let s25 = inc(s24); let s26 = inc(s25); let s27 = inc(s26); let s28 = inc(s27);
        let s29 = inc(s28); let s30 = inc(s29); let s31 = inc(s30); let s32 = inc(s31);
        let s33 = inc(s32); let s34 = inc(s33); let s35 = inc(s34); let s36 = inc(s35);
        let s37 = inc(s36); let s38 = inc(s37); let s39 = inc(s38); let s40 = inc(s39);
        let s41 = inc(s40); let s42 = inc(s41); let s43 = inc(s42); let s44 = inc(s43);
        let s45 = inc(s44); let s46 = inc(s45); let s47 = inc(s46); let s48 = inc(s47);
        let s49 = inc(s48); let s50 = inc(s49); let s51 = inc(s50); let s52 = inc(s51);
        let s53 = inc(s52); let s54 = inc(s53); let s55 = inc(s54); let s56 = inc(s55);
        let s57 = inc(s56); let s58 = inc(s57); let s59 = inc(s58); let s60 = inc(s59);
        let s61 = inc(s60); let s62 = inc(s61); let s63 = inc(s62); let s64 = inc(s63);
        let s65 = inc(s64); let s66 = inc(s65); let s67 = inc(s66); let s68 = inc(s67);
        let s69 = inc(s68); let s70 = inc(s69); let s71 = inc(s70); let s72 = inc(s71);
        let s73 = inc(s72); let s74 = inc(s73); let s75 = inc(s74); let s76 = inc(s75);
        let s77 = inc(s76); let s78 = inc(s77); let s79 = inc(s78); let s80 = inc(s79);
        let s81 = inc(s80); let s82 = inc(s81); let s83 = inc(s82); let s84 = inc(s83);
        let s85 = inc(s84); let s86 = inc(s85); let s87 = inc(s86); let s88 = inc(s87);
        let s89 = inc(s88); let s90 = inc(s89); let s91 = inc(s90); let s92 = inc(s91);
        let s93 = inc(s92); let s94 = inc(s93); let s95 = inc(s94); let s96 = inc(s95);
        let s97 = inc(s96); let s98 = inc(s97); let s99 = inc(s98);
        inc(s99)
    }
}

workflow! {
    /// A chain of 200 no-op steps, each reading the previous step's output.
    Chain200(x: u64) -> u64 {
        let s1 = inc(x); let s2 = inc(s1); let s3 = inc(s2); let s4 = inc(s3);
        let s5 = inc(s4); let s6 = inc(s5); let s7 = inc(s6); let s8 = inc(s7);
        let s9 = inc(s8); let s10 = inc(s9); let s11 = inc(s10); let s12 = inc(s11);
        let s13 = inc(s12); let s14 = inc(s13); let s15 = inc(s14); let s16 = inc(s15);
        let s17 = inc(s16); let s18 = inc(s17); let s19 = inc(s18); let s20 = inc(s19);
        let s21 = inc(s20); let s22 = inc(s21); let s23 = inc(s22); let s24 = inc(s23);
        let s25 = inc(s24); let s26 = inc(s25); let s27 = inc(s26); let s28 = inc(s27);
        let s29 = inc(s28); let s30 = inc(s29); let s31 = inc(s30); let s32 = inc(s31);
        let s33 = inc(s32); let s34 = inc(s33); let s35 = inc(s34); let s36 = inc(s35);
        let s37 = inc(s36); let s38 = inc(s37); let s39 = inc(s38); let s40 = inc(s39);
        let s41 = inc(s40); let s42 = inc(s41); let s43 = inc(s42); let s44 = inc(s43);
        let s45 = inc(s44); let s46 = inc(s45); let s47 = inc(s46); let s48 = inc(s47);
        let s49 = inc(s48); let s50 = inc(s49); let s51 = inc(s50); let s52 = inc(s51);
        let s53 = inc(s52); let s54 = inc(s53); let s55 = inc(s54); let s56 = inc(s55);
        let s57 = inc(s56); let s58 = inc(s57); let s59 = inc(s58); let s60 = inc(s59);
        let s61 = inc(s60); let s62 = inc(s61); let s63 = inc(s62); let s64 = inc(s63);
        let s65 = inc(s64); let s66 = inc(s65); let s67 = inc(s66); let s68 = inc(s67);
        let s69 = inc(s68); let s70 = inc(s69); let s71 = inc(s70); let s72 = inc(s71);
        let s73 = inc(s72); let s74 = inc(s73); let s75 = inc(s74); let s76 = inc(s75);
        let s77 = inc(s76); let s78 = inc(s77); let s79 = inc(s78); let s80 = inc(s79);
        let s81 = inc(s80); let s82 = inc(s81); let s83 = inc(s82); let s84 = inc(s83);
        let s85 = inc(s84); let s86 = inc(s85); let s87 = inc(s86); let s88 = inc(s87);
        let s89 = inc(s88); let s90 = inc(s89); let s91 = inc(s90); let s92 = inc(s91);
        let s93 = inc(s92); let s94 = inc(s93); let s95 = inc(s94); let s96 = inc(s95);
        let s97 = inc(s96); let s98 = inc(s97); let s99 = inc(s98); let s100 = inc(s99);
        let s101 = inc(s100); let s102 = inc(s101); let s103 = inc(s102); let s104 = inc(s103);
        let s105 = inc(s104); let s106 = inc(s105); let s107 = inc(s106); let s108 = inc(s107);
        let s109 = inc(s108); let s110 = inc(s109); let s111 = inc(s110); let s112 = inc(s111);
        let s113 = inc(s112); let s114 = inc(s113); let s115 = inc(s114); let s116 = inc(s115);
        let s117 = inc(s116); let s118 = inc(s117); let s119 = inc(s118); let s120 = inc(s119);
        let s121 = inc(s120); let s122 = inc(s121); let s123 = inc(s122); let s124 = inc(s123);
        let s125 = inc(s124); let s126 = inc(s125); let s127 = inc(s126); let s128 = inc(s127);
        let s129 = inc(s128); let s130 = inc(s129); let s131 = inc(s130); let s132 = inc(s131);
        let s133 = inc(s132); let s134 = inc(s133); let s135 = inc(s134); let s136 = inc(s135);
        let s137 = inc(s136); let s138 = inc(s137); let s139 = inc(s138); let s140 = inc(s139);
        let s141 = inc(s140); let s142 = inc(s141); let s143 = inc(s142); let s144 = inc(s143);
        let s145 = inc(s144); let s146 = inc(s145); let s147 = inc(s146); let s148 = inc(s147);
        let s149 = inc(s148); let s150 = inc(s149); let s151 = inc(s150); let s152 = inc(s151);
        let s153 = inc(s152); let s154 = inc(s153); let s155 = inc(s154); let s156 = inc(s155);
        let s157 = inc(s156); let s158 = inc(s157); let s159 = inc(s158); let s160 = inc(s159);
        let s161 = inc(s160); let s162 = inc(s161); let s163 = inc(s162); let s164 = inc(s163);
        let s165 = inc(s164); let s166 = inc(s165); let s167 = inc(s166); let s168 = inc(s167);
        let s169 = inc(s168); let s170 = inc(s169); let s171 = inc(s170); let s172 = inc(s171);
        let s173 = inc(s172); let s174 = inc(s173); let s175 = inc(s174); let s176 = inc(s175);
        let s177 = inc(s176); let s178 = inc(s177); let s179 = inc(s178); let s180 = inc(s179);
        let s181 = inc(s180); let s182 = inc(s181); let s183 = inc(s182); let s184 = inc(s183);
        let s185 = inc(s184); let s186 = inc(s185); let s187 = inc(s186); let s188 = inc(s187);
        let s189 = inc(s188); let s190 = inc(s189); let s191 = inc(s190); let s192 = inc(s191);
        let s193 = inc(s192); let s194 = inc(s193); let s195 = inc(s194); let s196 = inc(s195);
        let s197 = inc(s196); let s198 = inc(s197); let s199 = inc(s198);
        inc(s199)
    }
}

/// `fan_out_100!(Name, leaf, "doc")`: one root, 100 `leaf` steps reading it, a `sum10` per
/// 10 leaves, and the 10 sums added up in turn: 120 steps.
macro_rules! fan_out_100 {
    ($name:ident, $leaf:ident, $doc:literal) => {
        workflow! {
            #[doc = $doc]
            $name(x: u64) -> u64 {
                let root = inc(x);
                let l0 = $leaf(root); let l1 = $leaf(root); let l2 = $leaf(root); let l3 = $leaf(root);
                let l4 = $leaf(root); let l5 = $leaf(root); let l6 = $leaf(root); let l7 = $leaf(root);
                let l8 = $leaf(root); let l9 = $leaf(root); let l10 = $leaf(root); let l11 = $leaf(root);
                let l12 = $leaf(root); let l13 = $leaf(root); let l14 = $leaf(root); let l15 = $leaf(root);
                let l16 = $leaf(root); let l17 = $leaf(root); let l18 = $leaf(root); let l19 = $leaf(root);
                let l20 = $leaf(root); let l21 = $leaf(root); let l22 = $leaf(root); let l23 = $leaf(root);
                let l24 = $leaf(root); let l25 = $leaf(root); let l26 = $leaf(root); let l27 = $leaf(root);
                let l28 = $leaf(root); let l29 = $leaf(root); let l30 = $leaf(root); let l31 = $leaf(root);
                let l32 = $leaf(root); let l33 = $leaf(root); let l34 = $leaf(root); let l35 = $leaf(root);
                let l36 = $leaf(root); let l37 = $leaf(root); let l38 = $leaf(root); let l39 = $leaf(root);
                let l40 = $leaf(root); let l41 = $leaf(root); let l42 = $leaf(root); let l43 = $leaf(root);
                let l44 = $leaf(root); let l45 = $leaf(root); let l46 = $leaf(root); let l47 = $leaf(root);
                let l48 = $leaf(root); let l49 = $leaf(root); let l50 = $leaf(root); let l51 = $leaf(root);
                let l52 = $leaf(root); let l53 = $leaf(root); let l54 = $leaf(root); let l55 = $leaf(root);
                let l56 = $leaf(root); let l57 = $leaf(root); let l58 = $leaf(root); let l59 = $leaf(root);
                let l60 = $leaf(root); let l61 = $leaf(root); let l62 = $leaf(root); let l63 = $leaf(root);
                let l64 = $leaf(root); let l65 = $leaf(root); let l66 = $leaf(root); let l67 = $leaf(root);
                let l68 = $leaf(root); let l69 = $leaf(root); let l70 = $leaf(root); let l71 = $leaf(root);
                let l72 = $leaf(root); let l73 = $leaf(root); let l74 = $leaf(root); let l75 = $leaf(root);
                let l76 = $leaf(root); let l77 = $leaf(root); let l78 = $leaf(root); let l79 = $leaf(root);
                let l80 = $leaf(root); let l81 = $leaf(root); let l82 = $leaf(root); let l83 = $leaf(root);
                let l84 = $leaf(root); let l85 = $leaf(root); let l86 = $leaf(root); let l87 = $leaf(root);
                let l88 = $leaf(root); let l89 = $leaf(root); let l90 = $leaf(root); let l91 = $leaf(root);
                let l92 = $leaf(root); let l93 = $leaf(root); let l94 = $leaf(root); let l95 = $leaf(root);
                let l96 = $leaf(root); let l97 = $leaf(root); let l98 = $leaf(root); let l99 = $leaf(root);
                let g0 = sum10(l0, l1, l2, l3, l4, l5, l6, l7, l8, l9);
                let g1 = sum10(l10, l11, l12, l13, l14, l15, l16, l17, l18, l19);
                let g2 = sum10(l20, l21, l22, l23, l24, l25, l26, l27, l28, l29);
                let g3 = sum10(l30, l31, l32, l33, l34, l35, l36, l37, l38, l39);
                let g4 = sum10(l40, l41, l42, l43, l44, l45, l46, l47, l48, l49);
                let g5 = sum10(l50, l51, l52, l53, l54, l55, l56, l57, l58, l59);
                let g6 = sum10(l60, l61, l62, l63, l64, l65, l66, l67, l68, l69);
                let g7 = sum10(l70, l71, l72, l73, l74, l75, l76, l77, l78, l79);
                let g8 = sum10(l80, l81, l82, l83, l84, l85, l86, l87, l88, l89);
                let g9 = sum10(l90, l91, l92, l93, l94, l95, l96, l97, l98, l99);
                let t1 = add(g0, g1); let t2 = add(t1, g2); let t3 = add(t2, g3);
                let t4 = add(t3, g4); let t5 = add(t4, g5); let t6 = add(t5, g6);
                let t7 = add(t6, g7); let t8 = add(t7, g8);
                add(t8, g9)
            }
        }
    };
}

fan_out_100!(FanOut100, inc, "100 no-op leaves.");
fan_out_100!(
    WaitingFanOut100,
    inc_after_wait,
    "100 leaves that each wait once."
);

/// `fan_out_200!(Name, leaf, "doc")`: one root, 200 `leaf` steps reading it, a `sum10` per
/// 10 leaves, and the 20 sums added up in turn: 240 steps.
macro_rules! fan_out_200 {
    ($name:ident, $leaf:ident, $doc:literal) => {
        workflow! {
            #[doc = $doc]
            $name(x: u64) -> u64 {
                let root = inc(x);
                let l0 = $leaf(root); let l1 = $leaf(root); let l2 = $leaf(root); let l3 = $leaf(root);
                let l4 = $leaf(root); let l5 = $leaf(root); let l6 = $leaf(root); let l7 = $leaf(root);
                let l8 = $leaf(root); let l9 = $leaf(root); let l10 = $leaf(root); let l11 = $leaf(root);
                let l12 = $leaf(root); let l13 = $leaf(root); let l14 = $leaf(root); let l15 = $leaf(root);
                let l16 = $leaf(root); let l17 = $leaf(root); let l18 = $leaf(root); let l19 = $leaf(root);
                let l20 = $leaf(root); let l21 = $leaf(root); let l22 = $leaf(root); let l23 = $leaf(root);
                let l24 = $leaf(root); let l25 = $leaf(root); let l26 = $leaf(root); let l27 = $leaf(root);
                let l28 = $leaf(root); let l29 = $leaf(root); let l30 = $leaf(root); let l31 = $leaf(root);
                let l32 = $leaf(root); let l33 = $leaf(root); let l34 = $leaf(root); let l35 = $leaf(root);
                let l36 = $leaf(root); let l37 = $leaf(root); let l38 = $leaf(root); let l39 = $leaf(root);
                let l40 = $leaf(root); let l41 = $leaf(root); let l42 = $leaf(root); let l43 = $leaf(root);
                let l44 = $leaf(root); let l45 = $leaf(root); let l46 = $leaf(root); let l47 = $leaf(root);
                let l48 = $leaf(root); let l49 = $leaf(root); let l50 = $leaf(root); let l51 = $leaf(root);
                let l52 = $leaf(root); let l53 = $leaf(root); let l54 = $leaf(root); let l55 = $leaf(root);
                let l56 = $leaf(root); let l57 = $leaf(root); let l58 = $leaf(root); let l59 = $leaf(root);
                let l60 = $leaf(root); let l61 = $leaf(root); let l62 = $leaf(root); let l63 = $leaf(root);
                let l64 = $leaf(root); let l65 = $leaf(root); let l66 = $leaf(root); let l67 = $leaf(root);
                let l68 = $leaf(root); let l69 = $leaf(root); let l70 = $leaf(root); let l71 = $leaf(root);
                let l72 = $leaf(root); let l73 = $leaf(root); let l74 = $leaf(root); let l75 = $leaf(root);
                let l76 = $leaf(root); let l77 = $leaf(root); let l78 = $leaf(root); let l79 = $leaf(root);
                let l80 = $leaf(root); let l81 = $leaf(root); let l82 = $leaf(root); let l83 = $leaf(root);
                let l84 = $leaf(root); let l85 = $leaf(root); let l86 = $leaf(root); let l87 = $leaf(root);
                let l88 = $leaf(root); let l89 = $leaf(root); let l90 = $leaf(root); let l91 = $leaf(root);
                let l92 = $leaf(root); let l93 = $leaf(root); let l94 = $leaf(root); let l95 = $leaf(root);
                let l96 = $leaf(root); let l97 = $leaf(root); let l98 = $leaf(root); let l99 = $leaf(root);
                let l100 = $leaf(root); let l101 = $leaf(root); let l102 = $leaf(root); let l103 = $leaf(root);
                let l104 = $leaf(root); let l105 = $leaf(root); let l106 = $leaf(root); let l107 = $leaf(root);
                let l108 = $leaf(root); let l109 = $leaf(root); let l110 = $leaf(root); let l111 = $leaf(root);
                let l112 = $leaf(root); let l113 = $leaf(root); let l114 = $leaf(root); let l115 = $leaf(root);
                let l116 = $leaf(root); let l117 = $leaf(root); let l118 = $leaf(root); let l119 = $leaf(root);
                let l120 = $leaf(root); let l121 = $leaf(root); let l122 = $leaf(root); let l123 = $leaf(root);
                let l124 = $leaf(root); let l125 = $leaf(root); let l126 = $leaf(root); let l127 = $leaf(root);
                let l128 = $leaf(root); let l129 = $leaf(root); let l130 = $leaf(root); let l131 = $leaf(root);
                let l132 = $leaf(root); let l133 = $leaf(root); let l134 = $leaf(root); let l135 = $leaf(root);
                let l136 = $leaf(root); let l137 = $leaf(root); let l138 = $leaf(root); let l139 = $leaf(root);
                let l140 = $leaf(root); let l141 = $leaf(root); let l142 = $leaf(root); let l143 = $leaf(root);
                let l144 = $leaf(root); let l145 = $leaf(root); let l146 = $leaf(root); let l147 = $leaf(root);
                let l148 = $leaf(root); let l149 = $leaf(root); let l150 = $leaf(root); let l151 = $leaf(root);
                let l152 = $leaf(root); let l153 = $leaf(root); let l154 = $leaf(root); let l155 = $leaf(root);
                let l156 = $leaf(root); let l157 = $leaf(root); let l158 = $leaf(root); let l159 = $leaf(root);
                let l160 = $leaf(root); let l161 = $leaf(root); let l162 = $leaf(root); let l163 = $leaf(root);
                let l164 = $leaf(root); let l165 = $leaf(root); let l166 = $leaf(root); let l167 = $leaf(root);
                let l168 = $leaf(root); let l169 = $leaf(root); let l170 = $leaf(root); let l171 = $leaf(root);
                let l172 = $leaf(root); let l173 = $leaf(root); let l174 = $leaf(root); let l175 = $leaf(root);
                let l176 = $leaf(root); let l177 = $leaf(root); let l178 = $leaf(root); let l179 = $leaf(root);
                let l180 = $leaf(root); let l181 = $leaf(root); let l182 = $leaf(root); let l183 = $leaf(root);
                let l184 = $leaf(root); let l185 = $leaf(root); let l186 = $leaf(root); let l187 = $leaf(root);
                let l188 = $leaf(root); let l189 = $leaf(root); let l190 = $leaf(root); let l191 = $leaf(root);
                let l192 = $leaf(root); let l193 = $leaf(root); let l194 = $leaf(root); let l195 = $leaf(root);
                let l196 = $leaf(root); let l197 = $leaf(root); let l198 = $leaf(root); let l199 = $leaf(root);
                let g0 = sum10(l0, l1, l2, l3, l4, l5, l6, l7, l8, l9);
                let g1 = sum10(l10, l11, l12, l13, l14, l15, l16, l17, l18, l19);
                let g2 = sum10(l20, l21, l22, l23, l24, l25, l26, l27, l28, l29);
                let g3 = sum10(l30, l31, l32, l33, l34, l35, l36, l37, l38, l39);
                let g4 = sum10(l40, l41, l42, l43, l44, l45, l46, l47, l48, l49);
                let g5 = sum10(l50, l51, l52, l53, l54, l55, l56, l57, l58, l59);
                let g6 = sum10(l60, l61, l62, l63, l64, l65, l66, l67, l68, l69);
                let g7 = sum10(l70, l71, l72, l73, l74, l75, l76, l77, l78, l79);
                let g8 = sum10(l80, l81, l82, l83, l84, l85, l86, l87, l88, l89);
                let g9 = sum10(l90, l91, l92, l93, l94, l95, l96, l97, l98, l99);
                let g10 = sum10(l100, l101, l102, l103, l104, l105, l106, l107, l108, l109);
                let g11 = sum10(l110, l111, l112, l113, l114, l115, l116, l117, l118, l119);
                let g12 = sum10(l120, l121, l122, l123, l124, l125, l126, l127, l128, l129);
                let g13 = sum10(l130, l131, l132, l133, l134, l135, l136, l137, l138, l139);
                let g14 = sum10(l140, l141, l142, l143, l144, l145, l146, l147, l148, l149);
                let g15 = sum10(l150, l151, l152, l153, l154, l155, l156, l157, l158, l159);
                let g16 = sum10(l160, l161, l162, l163, l164, l165, l166, l167, l168, l169);
                let g17 = sum10(l170, l171, l172, l173, l174, l175, l176, l177, l178, l179);
                let g18 = sum10(l180, l181, l182, l183, l184, l185, l186, l187, l188, l189);
                let g19 = sum10(l190, l191, l192, l193, l194, l195, l196, l197, l198, l199);
                let t1 = add(g0, g1); let t2 = add(t1, g2); let t3 = add(t2, g3);
                let t4 = add(t3, g4); let t5 = add(t4, g5); let t6 = add(t5, g6);
                let t7 = add(t6, g7); let t8 = add(t7, g8); let t9 = add(t8, g9);
                let t10 = add(t9, g10); let t11 = add(t10, g11); let t12 = add(t11, g12);
                let t13 = add(t12, g13); let t14 = add(t13, g14); let t15 = add(t14, g15);
                let t16 = add(t15, g16); let t17 = add(t16, g17); let t18 = add(t17, g18);
                add(t18, g19)
            }
        }
    };
}

fan_out_200!(FanOut200, inc, "200 no-op leaves.");
fan_out_200!(
    WaitingFanOut200,
    inc_after_wait,
    "200 leaves that each wait once."
);

// ---- The measurements. ----

fn chain(parallelism: Parallelism) -> PerStep {
    per_step(
        &Size {
            steps: 100,
            run: || Chain100::new().with_options(options(parallelism)).run(0),
        },
        &Size {
            steps: 200,
            run: || Chain200::new().with_options(options(parallelism)).run(0),
        },
    )
}

fn fan_out(parallelism: Parallelism) -> PerStep {
    per_step(
        &Size {
            steps: 120,
            run: || FanOut100::new().with_options(options(parallelism)).run(0),
        },
        &Size {
            steps: 240,
            run: || FanOut200::new().with_options(options(parallelism)).run(0),
        },
    )
}

fn waiting_fan_out(parallelism: Parallelism) -> PerStep {
    per_step(
        &Size {
            steps: 120,
            run: || {
                WaitingFanOut100::new()
                    .with_options(options(parallelism))
                    .run(0)
            },
        },
        &Size {
            steps: 240,
            run: || {
                WaitingFanOut200::new()
                    .with_options(options(parallelism))
                    .run(0)
            },
        },
    )
}

#[test]
fn a_chain_with_a_task_per_step_stays_within_its_budget() {
    // Measured: 1.00 allocations, 272.00 bytes per step (each step goes on in the task
    // of the step before it, here the run's own: no task, no spawn; the boxed future of
    // the node's attempt is the allocation, and 8 bytes are the node's slot in the run's
    // queue of ready nodes).
    let budget = Budget {
        allocations: 1.3,
        bytes: 360.0,
    };
    check("chain_tasks", chain(Parallelism::Tasks), &budget);
}

#[test]
fn a_chain_in_one_task_stays_within_its_budget() {
    // Measured: 2.01 allocations, 1061.48 bytes per step.
    let budget = Budget {
        allocations: 2.6,
        bytes: 1330.0,
    };
    check("chain_single_task", chain(Parallelism::SingleTask), &budget);
}

#[test]
fn a_fan_out_with_a_task_per_step_stays_within_its_budget() {
    // Measured: 1.00 allocations, 278.67 bytes per step: the node's boxed future. On one
    // thread the run's task takes every ready node from the run's queue itself, and the
    // one task it spawns for a worker that does not exist finds the queue empty: a step
    // costs no task. (2.67 allocations and 797 bytes when every step that became ready
    // beside another got a task, with a box for its attempts; 1.83 allocations and 828
    // bytes before that box, when tokio copied the attempts' state three times per step.)
    let budget = Budget {
        allocations: 1.3,
        bytes: 350.0,
    };
    check("fan_out_tasks", fan_out(Parallelism::Tasks), &budget);
}

#[test]
fn a_fan_out_of_steps_that_wait_with_a_task_per_step_stays_within_its_budget() {
    // Measured: 1.20 allocations, 360.27 bytes per step: the node's boxed future, and
    // for a step in five or so, a task with a box for its attempts. A step that waits
    // hands the ready nodes to a new task; here each wait ends at the task's next poll, so
    // the tasks that waited take nodes again and only some waits need a new task.
    let budget = Budget {
        allocations: 1.5,
        bytes: 450.0,
    };
    check(
        "waiting_fan_out_tasks",
        waiting_fan_out(Parallelism::Tasks),
        &budget,
    );
}

#[test]
fn a_fan_out_in_one_task_stays_within_its_budget() {
    // Measured: 2.02 allocations, 996.47 bytes per step.
    let budget = Budget {
        allocations: 2.6,
        bytes: 1245.0,
    };
    check(
        "fan_out_single_task",
        fan_out(Parallelism::SingleTask),
        &budget,
    );
}

#[test]
fn a_state_graph_loop_stays_within_its_budget() {
    let rounds = |goal: u64| {
        move || async move {
            let rounds = Loop::new().run(Rounds { done: 0, goal }).await?;
            Ok(rounds.done)
        }
    };
    let measured = per_step(
        &Size {
            steps: 100,
            run: rounds(100),
        },
        &Size {
            steps: 200,
            run: rounds(200),
        },
    );
    // Measured: 1.01 allocations, 1160.96 bytes per step.
    let budget = Budget {
        allocations: 1.3,
        bytes: 1460.0,
    };
    check("state_graph_loop", measured, &budget);
}

#[test]
fn a_durable_chain_stays_within_its_budget() {
    // A new store for every run: a store that kept the earlier runs would grow its maps
    // in some of the measured runs and not in others.
    let measured = per_step(
        &Size {
            steps: 100,
            run: || {
                let durable = Durable::new(Chain100::new(), MemoryStore::new());
                async move { durable.run(0).await }
            },
        },
        &Size {
            steps: 200,
            run: || {
                let durable = Durable::new(Chain200::new(), MemoryStore::new());
                async move { durable.run(0).await }
            },
        },
    );
    // Measured: 10.04 allocations, 3329.36 bytes per step (one of them the boxed future
    // of a stored node's attempts, which runs in memory do not carry).
    let budget = Budget {
        allocations: 12.6,
        bytes: 4160.0,
    };
    check("durable_chain", measured, &budget);
}
