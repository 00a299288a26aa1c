//! The runtime of the `workflow` crate: it runs the workflows that `#[step]` and
//! `workflow!` compile.
//!
//! Depend on the `workflow` crate, not on this one: it re-exports everything here together
//! with the macros.
#![warn(missing_docs)]

mod cache;
#[cfg(feature = "cli")]
pub mod cli;
mod durable;
mod events;
mod graph;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "progress")]
mod live;
#[cfg(feature = "mock")]
pub mod mock;
mod policy;
mod report;
mod run;
mod step;
pub mod store;
pub mod worker;
mod workflow;

#[doc(hidden)]
pub mod private;

pub use durable::{BoxFuture, Durable, DynDurable, HistoryStep, JsonRun};
pub use events::{Event, EventKind, EventStream};
pub use graph::{
    Arm, Bound, Edge, Graph, InputDef, Next, NodeCost, NodeDef, NodeId, Shape, Source,
    StateGraphDef, Target, Transition,
};
pub use policy::{Backoff, Jitter, OnFailure, Policy};
pub use report::{Progress, RunSummary, StepOutcome, StepSummary, human};
pub use run::{
    Canceller, DEFAULT_MAX_STEPS, Parallelism, RunError, RunHandle, RunId, RunOptions,
    StepTransaction, idempotency_key, transaction,
};
pub use step::{Answer, BoxError, ErrorKind, IntoStepError, Pause, Step, StepError, StepOutput};
pub use workflow::{SubContext, Workflow};
