//! Items used only by code that `#[step]` and `workflow!` generate. Not a public API: names
//! and signatures change without notice.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

pub use crate::graph::{Graph, InputDef, NodeDef, NodeId, Source};
pub use crate::policy::{Backoff, Policy};
pub use crate::run::{RunError, RunHandle, RunOptions};
pub use crate::step::{IntoStepError, Step, StepError, StepOutput};
pub use crate::workflow::Workflow;
pub use std::sync::Arc as ArcPtr;

use crate::step::StepError as Error;

/// The future of one attempt of one node.
pub type NodeFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'static>>;

/// Where a node's output is kept until its dependents and the run's output read it.
pub type Slot<T> = OnceLock<T>;

/// The typed glue `workflow!` generates for the scheduler.
pub trait Compiled: Workflow {
    /// The state of one run: the context, the inputs and a slot per node.
    type Run: Send + Sync + 'static;

    /// The state of a new run.
    fn new_run(ctx: Arc<Self::Context>, input: Self::Input) -> Self::Run;

    /// One attempt of `node`, reading its inputs from the run and filling its slot.
    fn node(run: &Arc<Self::Run>, node: NodeId) -> NodeFuture;

    /// Takes the output from a run whose nodes all succeeded.
    fn output(run: Self::Run) -> Option<Self::Output>;
}

/// Reads an input of a node.
///
/// # Errors
///
/// If the slot is empty, which the scheduler rules out by starting a node only after its
/// inputs exist.
pub fn input<T>(slot: &Slot<T>) -> Result<&T, Error> {
    slot.get()
        .ok_or_else(|| Error::msg("internal error: a step started before its input existed"))
}

/// Stores a node's output. A retried attempt after a success cannot happen, so a second
/// write is ignored.
pub fn fill<T>(slot: &Slot<T>, value: T) {
    let _ = slot.set(value);
}

/// Converts what a fallible step function returned.
pub fn fallible<T, E: IntoStepError>(result: Result<T, E>) -> Result<T, Error> {
    result.map_err(IntoStepError::into_step_error)
}

/// Fails to compile, at the step's return type, unless `T` can be a step output.
pub const fn assert_step_output<T: StepOutput>() {}

/// Lets a workflow's context be lent to a step that borrows a context of type `T`.
#[diagnostic::on_unimplemented(
    message = "this step borrows a context of type `{T}`, but the workflow's context is `{Self}`",
    label = "this step needs `ctx: {T}`",
    note = "a workflow has one context, its first parameter: declare it as `ctx: {T}`, or change the step's `ctx` parameter to `&{Self}`"
)]
pub trait AsContext<T> {
    /// The context, as the step borrows it.
    fn as_context(&self) -> &T;
}

impl<T> AsContext<T> for T {
    fn as_context(&self) -> &T {
        self
    }
}

/// Checks that the value a workflow ends with has its declared output type.
#[diagnostic::on_unimplemented(
    message = "this workflow declares the output `{T}`, but its last expression gives `{Self}`",
    label = "this gives `{Self}`",
    note = "change the workflow's `-> {T}`, or end it with a binding or step call that gives `{T}`"
)]
pub trait IsOutput<T> {
    /// The value, as the workflow's output.
    fn into_output(self) -> T;
}

impl<T> IsOutput<T> for T {
    fn into_output(self) -> T {
        self
    }
}

/// Converts the last expression of a workflow into its declared output type.
pub fn output<O, T: IsOutput<O>>(value: T) -> O {
    value.into_output()
}

/// Runs a workflow to completion in the calling task.
pub fn run<W: Compiled>(
    ctx: &Arc<W::Context>,
    options: &RunOptions,
    input: W::Input,
) -> impl Future<Output = Result<W::Output, RunError>> + Send + use<W> {
    crate::run::run::<W>(Arc::clone(ctx), options.clone(), input)
}

/// Starts a workflow in a new tokio task.
pub fn start<W: Compiled>(
    ctx: &Arc<W::Context>,
    options: &RunOptions,
    input: W::Input,
) -> RunHandle<W::Output> {
    crate::run::start::<W>(ctx, options, input)
}

/// A stand-in value for a binding in the generated usage check (see `workflow!`'s unused
/// output warning).
#[derive(Clone, Copy)]
pub struct Binding;

/// Marks a binding as used in the generated usage check.
pub fn used(_: &Binding) {}
