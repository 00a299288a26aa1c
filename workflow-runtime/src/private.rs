//! Items used only by code that `#[step]` and `workflow!` generate. Not a public API: names
//! and signatures change without notice.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use futures_util::FutureExt as _;

pub use crate::graph::{
    Arm, Bound, Graph, InputDef, Next, NodeCost, NodeDef, NodeId, Shape, Source, StateGraphDef,
    Target,
};
pub use crate::policy::{Backoff, Jitter, OnFailure, Policy};
pub use crate::run::{RunError, RunHandle, RunOptions};
pub use crate::step::{Answer, IntoStepError, Pause, Step, StepError, StepOutput};
pub use crate::workflow::{SubContext, Workflow};
pub use std::sync::Arc as ArcPtr;

use crate::step::StepError as Error;

/// The future of one attempt of one node, borrowing the run it reads its inputs from and
/// fills the node's slot of (a step task holds the run already: cloning its `Arc` for each
/// attempt would only make every step write the count that all of them share).
pub type NodeFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// Where a node's output is kept until its dependents and the run's output read it.
pub type Slot<T> = OnceLock<T>;

/// The typed glue `workflow!` generates for the scheduler.
pub trait Compiled: Workflow {
    /// The state of one run: the context, the inputs and a slot per node.
    type Run: Send + Sync + 'static;

    /// The state of a new run.
    fn new_run(ctx: Arc<Self::Context>, input: Self::Input) -> Self::Run;

    /// One attempt of `node`, reading its inputs from the run and filling its slot.
    fn node(run: &Arc<Self::Run>, node: NodeId) -> NodeFuture<'_>;

    /// Takes the output from a run whose nodes all succeeded.
    fn output(run: Self::Run) -> Option<Self::Output>;

    /// One attempt of `node`'s fallback (its fallback value, or its fallback step), filling
    /// its slot; for a node without one, an error.
    fn fallback(run: &Arc<Self::Run>, node: NodeId) -> NodeFuture<'_> {
        let _ = (run, node);
        Box::pin(std::future::ready(Err(Error::msg(
            "internal error: this node has no fallback",
        ))))
    }
}

/// One run's nodes, with its workflow's types erased: all that the dataflow scheduler
/// needs of a run. The scheduler (readiness, step tasks, attempts, retries, failure
/// policies, checkpoints) takes an `Arc<dyn Nodes>` and is compiled once, in this crate,
/// instead of once for every workflow of a program; what each workflow adds to a build is
/// its own glue and this trait's few methods.
pub(crate) trait Nodes: Send + Sync + 'static {
    /// One attempt of `node` (see [`Compiled::node`]).
    fn node(&self, node: NodeId) -> NodeFuture<'_>;

    /// One attempt of `node`'s fallback (see [`Compiled::fallback`]).
    fn fallback(&self, node: NodeId) -> NodeFuture<'_>;

    /// The output of a completed node, as JSON (see [`PersistNodes::save_node`]); for a
    /// run that keeps nothing, an error.
    fn save(&self, node: NodeId) -> Result<serde_json::Value, Error>;

    /// Fills a node's slot from JSON (see [`PersistNodes::restore_node`]); for a run that
    /// keeps nothing, an error.
    fn restore(&self, node: NodeId, value: serde_json::Value) -> Result<(), Error>;
}

/// How a durable run's node outputs move to and from JSON ([`PersistNodes`]).
type NodeCodec<R> = (
    fn(&R, NodeId) -> Result<serde_json::Value, Error>,
    fn(&R, NodeId, serde_json::Value) -> Result<(), Error>,
);

/// The [`Nodes`] of one run of workflow `W`.
pub(crate) struct Typed<W: Compiled> {
    run: Arc<W::Run>,
    /// `None` for a run that keeps nothing in a store.
    codec: Option<NodeCodec<W::Run>>,
}

impl<W: Compiled> Typed<W> {
    /// The nodes of a run that keeps nothing in a store.
    pub(crate) fn plain(run: Arc<W::Run>) -> Self {
        Self { run, codec: None }
    }

    /// The nodes of a durable run, whose outputs move to and from JSON.
    pub(crate) fn persisted(run: Arc<W::Run>) -> Self
    where
        W: PersistNodes,
    {
        Self {
            run,
            codec: Some((W::save_node, W::restore_node)),
        }
    }

    /// The run's state.
    pub(crate) fn run(&self) -> &Arc<W::Run> {
        &self.run
    }

    fn codec(&self) -> Result<&NodeCodec<W::Run>, Error> {
        self.codec
            .as_ref()
            .ok_or_else(|| Error::msg("internal error: this run keeps nothing in a store"))
    }
}

impl<W: Compiled> Nodes for Typed<W> {
    fn node(&self, node: NodeId) -> NodeFuture<'_> {
        W::node(&self.run, node)
    }

    fn fallback(&self, node: NodeId) -> NodeFuture<'_> {
        W::fallback(&self.run, node)
    }

    fn save(&self, node: NodeId) -> Result<serde_json::Value, Error> {
        (self.codec()?.0)(&self.run, node)
    }

    fn restore(&self, node: NodeId, value: serde_json::Value) -> Result<(), Error> {
        (self.codec()?.1)(&self.run, node, value)
    }
}

/// The future of one attempt of one node of a state graph: the state goes in, and comes
/// back out with the index of the route arm taken (0 for a node with a plain edge).
pub type StateFuture<S> = Pin<Box<dyn Future<Output = Result<(S, usize), Error>> + Send + 'static>>;

/// The typed glue `workflow!` generates for a state graph.
pub trait CompiledStateGraph: Workflow<Input = Self::State, Output = Self::State> {
    /// The state the nodes work on.
    type State: Clone + Send + 'static;

    /// One attempt of `node` over `state`; with `answer`, the node is a pause and its step
    /// does not run: the answer is given to the state instead.
    fn node(
        ctx: &Arc<Self::Context>,
        node: NodeId,
        state: Self::State,
        answer: Option<serde_json::Value>,
    ) -> StateFuture<Self::State>;
}

/// What `#[step]` generates for a step that takes `&mut S`: a node of a state graph over
/// `S`, in a workflow whose context is `C`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a step over this graph's state `{S}`",
    label = "this node must be a `#[step]` function taking `&mut {S}`",
    note = "a node of a state graph takes the state as `&mut {S}` (after an optional `ctx`); check the step's state parameter"
)]
pub trait StateStep<C: ?Sized, S> {
    /// What the step returns (a route matches on it).
    type Value;

    /// Calls the step on the state.
    fn call<'a>(
        ctx: &'a Arc<C>,
        state: &'a mut S,
    ) -> impl Future<Output = Result<Self::Value, Error>> + Send + 'a;

    /// For a pause step: gives the stored answer to the state and returns it, for the
    /// node's route to match on.
    ///
    /// # Errors
    ///
    /// When the answer does not decode, or the step is not a pause.
    fn answer(state: &mut S, answer: serde_json::Value) -> Result<Self::Value, Error> {
        let _ = (state, answer);
        Err(Error::msg("internal error: this node is not a pause"))
    }
}

/// What a pause step of a state graph does with its answer: decodes it and gives it to the
/// state.
///
/// # Errors
///
/// When the answer does not decode as `R`.
pub fn apply_answer<S, R: serde::de::DeserializeOwned + crate::step::Answer<S>>(
    state: &mut S,
    answer: serde_json::Value,
) -> Result<R, Error> {
    let answer: R = from_json(answer)?;
    answer.apply(state);
    Ok(answer)
}

/// Runs a workflow as a node of another workflow: its events nest in the outer run's.
///
/// # Errors
///
/// The inner run's error, as a step error.
pub async fn subworkflow<W: Compiled, C: SubContext<W::Context> + ?Sized>(
    ctx: &Arc<C>,
    input: W::Input,
) -> Result<W::Output, Error> {
    crate::run::run::<W>(C::sub_context(ctx), RunOptions::new(), input)
        .await
        .map_err(Error::from)
}

/// Runs a state graph as a node of another workflow: its events nest in the outer run's.
///
/// # Errors
///
/// The inner run's error, as a step error.
pub async fn state_subworkflow<W: CompiledStateGraph, C: SubContext<W::Context> + ?Sized>(
    ctx: &Arc<C>,
    state: W::State,
) -> Result<W::State, Error> {
    crate::run::run_state::<W>(C::sub_context(ctx), RunOptions::new(), state)
        .await
        .map_err(Error::from)
}

/// `Clone`, asked for only where a workflow is used as a subworkflow (its inputs are cloned
/// from the outer run's values); the context parameter keeps the bound from being checked
/// where the workflow is declared.
#[diagnostic::on_unimplemented(
    message = "a subworkflow's inputs are cloned from the outer run, but `{Self}` is not `Clone`",
    label = "this input must be `Clone`",
    note = "derive it: `#[derive(Clone)]`"
)]
pub trait CloneInput<C: ?Sized>: Sized {
    /// Clones the value.
    #[must_use]
    fn clone_input(&self) -> Self;
}

impl<T: Clone, C: ?Sized> CloneInput<C> for T {
    fn clone_input(&self) -> Self {
        self.clone()
    }
}

/// A fresh `()` context, for a subworkflow that has none.
pub fn no_context<C: ?Sized>(_: &Arc<C>) -> Arc<()> {
    Arc::new(())
}

/// A node's output, or an error when it does not exist yet.
fn input<T>(slot: &Slot<T>) -> Result<&T, Error> {
    slot.get().ok_or_else(|| Error::msg(MISSING_INPUT))
}

/// The error of a node that started before its inputs existed.
const MISSING_INPUT: &str = "internal error: a step started before its input existed";

/// Reads an input that a node reads with `.ok()`: `None` when its node was skipped.
pub fn maybe<'a, T, O: FromMaybe<'a, T>>(slot: &'a Slot<T>) -> O {
    O::from_maybe(slot.get())
}

/// What a step parameter fed by `binding.ok()` may be: `Option<&T>` or `Option<T>`.
#[diagnostic::on_unimplemented(
    message = "`.ok()` reads the node's output `{T}` as an `Option`, but this parameter is `{Self}`",
    label = "this parameter must be `Option<&{T}>` or `Option<{T}>`",
    note = "change the step's parameter to `Option<&{T}>`, or pass the binding without `.ok()`"
)]
pub trait FromMaybe<'a, T>: Sized {
    /// The parameter's value.
    fn from_maybe(value: Option<&'a T>) -> Self;
}

impl<'a, T> FromMaybe<'a, T> for Option<&'a T> {
    fn from_maybe(value: Option<&'a T>) -> Self {
        value
    }
}

impl<T: Clone> FromMaybe<'_, T> for Option<T> {
    fn from_maybe(value: Option<&T>) -> Self {
        value.cloned()
    }
}

/// One attempt of a node: awaits the step's future (made by the node's generated function,
/// which read the node's inputs for it) and stores its output in the node's slot.
///
/// Generic over the step's future only: every node that calls the same step shares this
/// state machine, so a workflow's build cost grows with its distinct steps, not with its
/// nodes (a node adds a plain function that reads its inputs).
pub fn node<'r, F, T>(call: F, slot: &'r Slot<T>) -> NodeFuture<'r>
where
    F: Future<Output = Result<T, Error>> + Send + 'r,
    T: Send + Sync + 'r,
{
    // `map`, not an `async` block: the block would keep `call` twice, as the value it
    // captured and as the future it awaits (rust-lang/rust#62958).
    Box::pin(call.map(move |output| output.map(|value| fill(slot, value))))
}

/// A node's output, once it exists: what a node's generated function reads its inputs
/// with. Not inlined: every node reads its inputs, and inlined reads made a large part of
/// the code that a workflow of many nodes hands to the optimizer (an atomic load, a
/// branch and a match per input, per node).
#[inline(never)]
pub fn get<T>(slot: &Slot<T>) -> Option<&T> {
    slot.get()
}

/// The attempt of a node that started before its inputs existed, which the scheduler rules
/// out: an error, not a panic.
pub fn missing_input<'r>() -> NodeFuture<'r> {
    Box::pin(std::future::ready(Err(Error::msg(MISSING_INPUT))))
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

/// The bounds a state graph's state satisfies: it is checkpointed after every node.
#[diagnostic::on_unimplemented(
    message = "the state type `{Self}` of this step is not serializable",
    label = "a state graph's state is checkpointed after each node: it must implement `Serialize + DeserializeOwned + Send + Sync + 'static`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait StepState: StepOutput {}

#[diagnostic::do_not_recommend]
impl<T: StepOutput> StepState for T {}

/// Fails to compile, at the step's state parameter, unless `S` can be a state graph's
/// state.
pub const fn assert_step_state<S: StepState>() {}

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

/// Checks that a node's fallback (value or step) gives the node's output type.
#[diagnostic::on_unimplemented(
    message = "this fallback gives `{Self}`, but the node's step gives `{T}`",
    label = "expected `{T}` here",
    note = "a fallback stands in for the node's output: give a value of type `{T}`, or a fallback step that returns `{T}`"
)]
pub trait IsFallback<T> {
    /// The value, as the node's output.
    fn into_fallback(self) -> T;
}

impl<T> IsFallback<T> for T {
    fn into_fallback(self) -> T {
        self
    }
}

/// Converts a fallback into the node's output type.
pub fn fallback<O, T: IsFallback<O>>(value: T) -> O {
    value.into_fallback()
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

/// Runs a state graph to completion in the calling task.
pub fn run_state<W: CompiledStateGraph>(
    ctx: &Arc<W::Context>,
    options: &RunOptions,
    state: W::State,
) -> impl Future<Output = Result<W::State, RunError>> + Send + use<W> {
    crate::run::run_state::<W>(Arc::clone(ctx), options.clone(), state)
}

/// Starts a state graph in a new tokio task.
pub fn start_state<W: CompiledStateGraph>(
    ctx: &Arc<W::Context>,
    options: &RunOptions,
    state: W::State,
) -> RunHandle<W::State> {
    crate::run::start_state::<W>(ctx, options, state)
}

/// A stand-in value for a binding in the generated usage check (see `workflow!`'s unused
/// output warning).
#[derive(Clone, Copy)]
pub struct Binding;

/// Marks a binding as used in the generated usage check.
pub fn used(_: &Binding) {}

/// A workflow input or state that a durable run stores as JSON. Implemented for every
/// `Serialize + DeserializeOwned` type; the parameter `X` keeps the check from happening
/// where the workflow is declared, so that only workflows run with a store need it.
#[diagnostic::on_unimplemented(
    message = "a durable run stores `{Self}` as JSON, but it does not implement `serde::Serialize` and `serde::Deserialize`",
    label = "`{Self}` must be `Serialize + Deserialize` to be stored",
    note = "derive them on the type: `#[derive(serde::Serialize, serde::Deserialize)]`; a workflow run with a store keeps its inputs (or its state) so that the run can resume"
)]
pub trait Stored<X: ?Sized>: Sized {
    /// The value as JSON.
    ///
    /// # Errors
    ///
    /// When the value's `Serialize` impl fails.
    fn to_stored(&self) -> Result<serde_json::Value, Error>;

    /// The value from JSON.
    ///
    /// # Errors
    ///
    /// When the JSON does not decode as `Self`.
    fn from_stored(value: serde_json::Value) -> Result<Self, Error>;
}

#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned, X: ?Sized> Stored<X> for T {
    fn to_stored(&self) -> Result<serde_json::Value, Error> {
        to_json(self)
    }

    fn from_stored(value: serde_json::Value) -> Result<Self, Error> {
        from_json(value)
    }
}

/// A value as JSON.
///
/// # Errors
///
/// When the value's `Serialize` impl fails.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(value).map_err(|error| {
        Error::msg(format!(
            "cannot store a `{}` as JSON: {error}",
            std::any::type_name::<T>()
        ))
        .permanent()
    })
}

/// A value from JSON.
///
/// # Errors
///
/// When the JSON does not decode as `T`.
pub fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|error| {
        Error::msg(format!("not a `{}`: {error}", std::any::type_name::<T>())).permanent()
    })
}

/// Restores a node's output from its checkpoint into its slot.
///
/// # Errors
///
/// When the JSON does not decode as the node's output type.
pub fn restore<T: serde::de::DeserializeOwned>(
    slot: &Slot<T>,
    value: serde_json::Value,
) -> Result<(), Error> {
    fill(slot, from_json(value)?);
    Ok(())
}

/// A node's output, for its checkpoint.
///
/// # Errors
///
/// When the slot is empty (the node has not completed) or the value does not serialize.
pub fn save<T: serde::Serialize>(slot: &Slot<T>) -> Result<serde_json::Value, Error> {
    to_json(input(slot)?)
}

/// What `workflow!` generates so that a workflow can run durably, with a
/// [`Store`](crate::store::Store): its values to and from JSON, and the durable scheduler
/// of its shape. `X` is always `()` where it is used; see [`Stored`].
pub trait Persist<X: ?Sized>: Workflow {
    /// The input as JSON.
    ///
    /// # Errors
    ///
    /// When it does not serialize.
    fn save_input(input: &Self::Input) -> Result<serde_json::Value, Error>;

    /// The input from JSON.
    ///
    /// # Errors
    ///
    /// When the JSON does not decode as the input type.
    fn load_input(value: serde_json::Value) -> Result<Self::Input, Error>;

    /// The output as JSON.
    ///
    /// # Errors
    ///
    /// When it does not serialize.
    fn save_output(output: &Self::Output) -> Result<serde_json::Value, Error>;

    /// The output from JSON.
    ///
    /// # Errors
    ///
    /// When the JSON does not decode as the output type.
    fn load_output(value: serde_json::Value) -> Result<Self::Output, Error>;

    /// Drives a durable run to its end (or its next pause) in the calling task.
    fn drive(
        ctx: Arc<Self::Context>,
        options: RunOptions,
        run: crate::durable::DurableRun<Self::Input>,
    ) -> crate::durable::DriveFuture<Self::Output>;

    /// Checks an answer to the run's pause and turns it into what the store records: the
    /// pause node's checkpoint, or a state graph's state after it.
    fn answer(
        args: crate::durable::AnswerArgs<Self::Context, Self::Input>,
    ) -> crate::durable::AnswerFuture;

    /// Runs one task of a submitted run, claimed by a worker, and records its result.
    fn work(
        ctx: Arc<Self::Context>,
        options: RunOptions,
        task: crate::worker::WorkTask,
    ) -> crate::worker::WorkFuture;
}

/// The node-level part of [`Persist`] for a dataflow workflow: its slots to and from JSON.
pub trait PersistNodes: Compiled {
    /// The output of a completed node, as JSON.
    ///
    /// # Errors
    ///
    /// When the node has not completed or its output does not serialize.
    fn save_node(run: &Self::Run, node: NodeId) -> Result<serde_json::Value, Error>;

    /// Fills a node's slot from its checkpoint.
    ///
    /// # Errors
    ///
    /// When the JSON does not decode as the node's output.
    fn restore_node(run: &Self::Run, node: NodeId, value: serde_json::Value) -> Result<(), Error>;
}

pub use crate::durable::{
    AnswerArgs, AnswerFuture, DriveFuture, DurableRun, answer_dataflow, answer_state_graph,
    drive_dataflow, drive_state_graph,
};
pub use crate::worker::{WorkFuture, WorkTask, work_dataflow, work_state_graph};
pub use serde_json::Value as JsonValue;
