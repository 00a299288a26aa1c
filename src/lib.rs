//! Workflows as compiled Rust.
//!
//! Mark plain functions `#[step]`, wire them in `workflow! { ... }`, and the compiler checks
//! the graph: a dependency cycle, an unknown step or binding, an input whose type does not
//! match the output wired to it, a workflow without output, or a step output that cannot be
//! serialized is a compile error at the offending token. A small tokio runtime runs the
//! result: every node starts the moment its inputs exist, independent steps run in
//! parallel, and every run reports a typed stream of events.
//!
//! ```
//! use workflow::prelude::*;
//!
//! #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
//! pub struct Order { items: Vec<u32> }
//!
//! /// Shared resources: every step may borrow them.
//! pub struct Shop { tax_percent: u32 }
//!
//! #[step]
//! fn subtotal(order: &Order) -> u32 {
//!     order.items.iter().sum()
//! }
//!
//! #[step]
//! fn tax(ctx: &Shop, subtotal: &u32) -> u32 {
//!     subtotal * ctx.tax_percent / 100
//! }
//!
//! #[step(retries = 2, timeout = "5s")]
//! async fn invoice(subtotal: &u32, tax: &u32) -> Result<String, StepError> {
//!     Ok(format!("{subtotal} + {tax} tax"))
//! }
//!
//! workflow! {
//!     /// Prices an order.
//!     pub Checkout(ctx: Shop, order: Order) -> String {
//!         let sub = subtotal(order);
//!         let tax = tax(sub);
//!         invoice(sub, tax)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), RunError> {
//! let checkout = Checkout::new(Shop { tax_percent: 20 });
//! let invoice = checkout.run(Order { items: vec![10, 40] }).await?;
//! assert_eq!(invoice, "50 + 10 tax");
//! # Ok(())
//! # }
//! ```
//!
//! # Steps
//!
//! `#[step]` goes on a free function, `async` or not, returning `T` or `Result<T, E>` where
//! `E` is any `std::error::Error + Send + Sync + 'static` or [`StepError`]. A leading
//! parameter named `ctx` (or `_ctx`) of type `&Ctx` receives the workflow's context; every
//! other parameter is an input, taken as `&T` (shared with other steps) or as an owned
//! `T: Clone` (cloned for the call). The output must be
//! `Serialize + DeserializeOwned + Send + Sync + 'static`, so that it can be checkpointed or
//! sent anywhere. The function is left as it is, callable on its own; `#[step]` adds a
//! companion type of the same name that `workflow!` reads.
//!
//! Options: `retries = N`, `backoff = "100ms..10s"` (exponential, doubling), `jitter =
//! "full"` (the default: each delay is drawn between zero and the backoff's; `"none"` waits
//! exactly the backoff; `RunOptions::jitter_seed` makes the draws reproducible), `timeout =
//! "30s"` (per attempt), `name = "..."` (the name in events and graphs), `crate = "path"`
//! (the path of this crate when it is renamed).
//!
//! # Workflows
//!
//! ```text
//! workflow! {
//!     /// docs
//!     pub Name(ctx: Ctx, input: Input, ...) -> Output {
//!         let binding = step(input_or_binding, ...);
//!         ...
//!         final_step(binding, ...)          // or just a binding
//!     }
//! }
//! ```
//!
//! Each `let` is a node and each argument an edge; order in the block does not matter. The
//! context parameter is optional; with no input the input type is `()`, with several it is
//! a tuple in declaration order. `let _ = step(...)` runs a step whose output nothing
//! reads. An output that nothing reads is rustc's `unused_variables` warning at its binding
//! (deny it with `#![deny(unused_variables)]`, or prefix the binding with `_`).
//!
//! `#[node(...)]` on a `let` (or on the output call) sets that node's policy over its
//! step's: `retries`, `backoff`, `jitter` and `timeout` as in `#[step]`, and what happens
//! when it fails for good ([`OnFailure`]): the run fails (the default); `on_failure = skip`
//! skips it and every node downstream that needs it, while a node that reads it as
//! `binding.ok()` runs with `None` (its parameter is `Option<&T>` or `Option<T>`);
//! `fallback = EXPR` makes `EXPR` its output; `fallback_step = step(args)` runs another
//! step in its place.
//!
//! ```
//! use workflow::prelude::*;
//!
//! #[step]
//! fn fetch(url: &String) -> Result<String, StepError> {
//!     Err(StepError::msg(format!("{url}: 503")))
//! }
//! #[step]
//! fn summary(page: Option<&String>) -> String {
//!     page.map_or_else(|| "(unavailable)".to_owned(), |page| page.clone())
//! }
//!
//! workflow! {
//!     /// Summarises a page, if it can be fetched.
//!     pub Summary(url: String) -> String {
//!         #[node(retries = 2, backoff = "10ms..100ms", on_failure = skip)]
//!         let page = fetch(url);
//!         summary(page.ok())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! assert_eq!(Summary::new().run("https://example.invalid".into()).await.unwrap(), "(unavailable)");
//! # }
//! ```
//!
//! # State graphs: routes and bounded loops
//!
//! For agents that loop (review, revise, review again) or route (send a ticket to one of
//! several handlers), a workflow takes a state as `&mut` and wires its nodes with explicit
//! edges and routes. Its nodes are steps that take `state: &mut State` as their one input
//! (after an optional `ctx`); they run one at a time, so two nodes can never race on a
//! field. A route is a Rust `match` on the value the node returned; each arm names the next
//! node or `END`.
//!
//! ```
//! use workflow::prelude::*;
//!
//! #[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
//! pub struct Essay { text: String, rounds: u32 }
//!
//! pub enum Verdict { Good, NeedsWork }
//!
//! #[step]
//! fn draft(essay: &mut Essay) {
//!     essay.text = "first draft".into();
//! }
//!
//! #[step]
//! async fn critique(essay: &mut Essay) -> Verdict {
//!     if essay.text.len() > 20 { Verdict::Good } else { Verdict::NeedsWork }
//! }
//!
//! #[step]
//! fn improve(essay: &mut Essay) {
//!     essay.text.push_str(", improved");
//!     essay.rounds += 1;
//! }
//!
//! workflow! {
//!     /// Drafts, then critiques and improves until the critique is happy.
//!     pub Writer(essay: &mut Essay) {
//!         draft -> critique;
//!         critique => match {
//!             Verdict::Good => END,
//!             Verdict::NeedsWork => improve,
//!         } max 5 => END;              // at most 5 critiques, then END
//!         improve -> critique;         // the loop
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), RunError> {
//! let essay = Writer::new().run(Essay::default()).await?;
//! assert_eq!(essay.text, "first draft, improved");
//! assert_eq!(essay.rounds, 1);
//! # Ok(())
//! # }
//! ```
//!
//! ```text
//! workflow! {
//!     pub Name(ctx: Ctx, state: &mut State) {        // ctx optional; no `-> Output`
//!         a -> b -> c;                              // edges; the first node named starts
//!         c => match {                              // a route on c's return value
//!             Pattern => next,                      // any pattern, with `if` guards
//!             Other if cond => END,
//!         } max 5 => END;                           // the loop bound, and where it goes
//!         next -> END;
//!     }
//! }
//! ```
//!
//! The run's output is the final state. What the compiler checks: every route target
//! exists (else "unknown node", with a suggestion); the `match` is exhaustive (rustc's own
//! error, at the route's `match`); every node has one way on (an edge or a route, never
//! two) and is reachable from the start; a cycle that passes through no route is an error
//! (it could never end); a cycle through a route needs a bound on that route, `max N =>
//! target`, whose target leaves the loop. A bound counts the route's rounds in the run: when
//! the route runs for the `N`-th time and picks an arm that loops, the run goes to the
//! bound's target instead, and the events say so ([`EventKind::LoopBoundHit`]). Each route
//! decision is an [`EventKind::Routed`] event.
//!
//! A run also has a global step limit, [`DEFAULT_MAX_STEPS`] node executions unless
//! [`RunOptions::max_steps`] says otherwise; exceeding it fails the run with
//! [`RunError::StepLimit`]. Retries work as for dataflow steps, and an attempt that fails
//! leaves no writes behind: each attempt that may be retried works on a copy of the state.
//!
//! # Subworkflows
//!
//! Every workflow is also a step. In a dataflow workflow, `let x = Other(args);` runs the
//! workflow `Other` (either shape) as a node: its inputs are the arguments, and a state
//! graph takes the initial state and gives the final one. In a state graph, a workflow
//! whose input and output are both the state is a node like any other (`a -> Research ->
//! b;`): this is how a state graph does parallel work inside one node. The inner run's
//! events appear in the outer stream as [`EventKind::Nested`], and renderings draw the
//! inner graph inside its node. A workflow run from inside any step (`Other::new(..).run(..)`)
//! nests its events the same way. When the inner workflow's context has another type,
//! implement [`SubContext`] for the outer one.
//!
//! # Durable runs, workers, transactional steps
//!
//! [`Durable`] pairs a workflow with a [`store::Store`] (SQLite by default, PostgreSQL with
//! the `postgres` feature): every completed node is checkpointed, a run whose process died
//! resumes where it stopped, and a pause waits, stored, for its answer. On PostgreSQL,
//! [`Durable::submit`] hands a run to the [`worker::Worker`]s sharing the database, on any
//! number of machines, which claim its ready nodes under leases. Inside a step,
//! [`transaction()`] queues SQL statements that commit in the transaction storing the
//! step's checkpoint.
#![warn(missing_docs)]

pub use workflow_macros::{step, workflow};
pub use workflow_runtime::*;

/// OpenTelemetry export of runs and steps (feature `otel`): the `workflow-otel` crate.
#[cfg(feature = "otel")]
pub use workflow_otel as otel;

/// Everything a workflow needs in scope: `use workflow::prelude::*;`.
pub mod prelude {
    pub use workflow_macros::{step, workflow};
    pub use workflow_runtime::{
        Answer, Durable, Event, EventKind, EventStream, Graph, Parallelism, Pause, RunError,
        RunHandle, RunOptions, RunSummary, Step, StepError, Workflow,
    };
}

#[doc(hidden)]
pub use workflow_runtime::private as __private;
