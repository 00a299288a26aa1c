// The steps of the benchmarks' shapes, and the helpers of their hand-written versions;
// `include!`d at each benchmark's root, with the shapes it measures (`generated/*.rs`).

// ---- The no-op steps: plain functions, called by both sides. ----

#[step]
fn inc(x: &u64) -> u64 {
    x.wrapping_add(1)
}

/// How many rounds of arithmetic each `leaf` step makes: none (a no-op step) unless a
/// benchmark gives the leaves work.
static LEAF_WORK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A fan-out's leaf: a no-op, or `LEAF_WORK` rounds of arithmetic (CPU-light work).
#[step]
fn leaf(x: &u64) -> u64 {
    let mut h = *x;
    for _ in 0..LEAF_WORK.load(std::sync::atomic::Ordering::Relaxed) {
        h = std::hint::black_box(h.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 1);
    }
    h.wrapping_sub(*x).wrapping_add(x.wrapping_add(1))
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

#[step]
fn research(topic: &u64) -> u64 {
    topic.wrapping_add(1)
}

#[step]
fn blog_post(research: &u64) -> u64 {
    research.wrapping_add(1)
}

#[step]
fn linkedin(post: &u64) -> u64 {
    post.wrapping_add(1)
}

#[step]
fn twitter(post: &u64) -> u64 {
    post.wrapping_add(2)
}

#[step]
fn email(post: &u64) -> u64 {
    post.wrapping_add(3)
}

#[step]
fn meta(tweet: &u64) -> u64 {
    tweet.wrapping_add(1)
}

#[step]
fn quality_check(linkedin: &u64, tweet: &u64, email: &u64, meta: &u64) -> u64 {
    linkedin
        .wrapping_add(*tweet)
        .wrapping_add(*email)
        .wrapping_add(*meta)
}

#[step]
fn publish(checked: &u64) -> u64 {
    checked.wrapping_add(1)
}

// ---- Helpers of the hand-written versions. ----

/// `step_after!(name; inputs)` defines `name(step, inputs...)`: awaits the inputs in turn,
/// then calls the step (for inputs that are tasks running on their own).
macro_rules! step_after {
    ($name:ident; $($input:ident: $ty:ident),+) => {
        async fn $name<$($ty,)+ O>(
            step: impl FnOnce($(&$ty),+) -> O,
            $($input: impl Future<Output = $ty>),+
        ) -> O {
            $(let $input = $input.await;)+
            step($(&$input),+)
        }
    };
}

/// `step_join!(name; inputs)` defines `name(step, inputs...)`: polls the inputs together
/// with `tokio::join!`, then calls the step (for inputs driven by the awaiting task).
macro_rules! step_join {
    ($name:ident; $($input:ident: $ty:ident),+) => {
        async fn $name<$($ty,)+ O>(
            step: impl FnOnce($(&$ty),+) -> O,
            $($input: impl Future<Output = $ty>),+
        ) -> O {
            let ($($input,)+) = tokio::join!($($input),+);
            step($(&$input),+)
        }
    };
}

step_after!(step_after1; a: A);
step_after!(step_after4; a: A, b: B, c: C, d: D);
step_after!(step_after10; a: A, b: B, c: C, d: D, e: E, f: F, g: G, h: H, i: I, j: J);
step_join!(step_join4; a: A, b: B, c: C, d: D);
step_join!(step_join10; a: A, b: B, c: C, d: D, e: E, f: F, g: G, h: H, i: I, j: J);

fn joined<T>(result: Result<T, JoinError>) -> T {
    result.expect("a step task panicked")
}

/// A spawned step, awaited by the one step that reads it.
type Task<T> = Map<JoinHandle<T>, fn(Result<T, JoinError>) -> T>;

/// A spawned step read by several steps.
type SharedTask<T> = Shared<Task<T>>;

fn task<T: Send + 'static>(step: impl Future<Output = T> + Send + 'static) -> Task<T> {
    tokio::spawn(step).map(joined as fn(_) -> _)
}

fn shared_task<T: Clone + Send + Sync + 'static>(
    step: impl Future<Output = T> + Send + 'static,
) -> SharedTask<T> {
    task(step).shared()
}

