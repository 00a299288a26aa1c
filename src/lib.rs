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
//! Options: `retries = N`, `backoff = "100ms..10s"` (exponential, doubling), `timeout =
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
#![warn(missing_docs)]

pub use workflow_macros::{step, workflow};
pub use workflow_runtime::*;

/// Everything a workflow needs in scope: `use workflow::prelude::*;`.
pub mod prelude {
    pub use workflow_macros::{step, workflow};
    pub use workflow_runtime::{
        Event, EventKind, EventStream, Graph, Parallelism, RunError, RunHandle, RunOptions,
        RunSummary, Step, StepError, Workflow,
    };
}

#[doc(hidden)]
pub use workflow_runtime::private as __private;
