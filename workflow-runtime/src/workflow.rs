//! The trait every generated workflow type implements.

use std::sync::Arc;

use crate::graph::Graph;
use crate::run::RunOptions;

/// What `workflow!` generates: a typed workflow with a static graph.
///
/// The generated type also has inherent methods, so this trait rarely needs importing:
/// `new(ctx)` (or `new()` without a context), `with_context(Arc<Ctx>)`, `with_options`,
/// `run(input)`, `start(input)` and `graph()`.
pub trait Workflow: Send + Sync + 'static {
    /// The shared resources every step may borrow (`()` when the workflow has none).
    type Context: Send + Sync + 'static;
    /// The workflow's input: its single input's type, a tuple of several, or `()`.
    type Input: Send + 'static;
    /// The workflow's output.
    type Output: Send + 'static;

    /// The static description of the workflow: nodes, edges, policies.
    fn graph() -> &'static Graph;

    /// The context its runs share.
    fn context(&self) -> &Arc<Self::Context>;

    /// The options of the runs it starts.
    fn options(&self) -> &RunOptions;
}

/// Hands a subworkflow its context: a workflow with context `Self` runs, as one of its
/// nodes, a workflow whose context is `T`.
///
/// Implemented for every type to itself (a subworkflow with the same context shares it).
/// Implement it when the contexts differ, typically by keeping the inner context in the
/// outer one:
///
/// ```
/// use std::sync::Arc;
/// use workflow::SubContext;
///
/// struct SearchCtx {
///     index: Vec<String>,
/// }
/// struct AppCtx {
///     search: Arc<SearchCtx>,
/// }
///
/// impl SubContext<SearchCtx> for AppCtx {
///     fn sub_context(outer: &Arc<Self>) -> Arc<SearchCtx> {
///         Arc::clone(&outer.search)
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "this subworkflow needs a context of type `{T}`, but the workflow that runs it has `{Self}`",
    label = "the subworkflow's context is `{T}`",
    note = "implement `workflow::SubContext<{T}>` for `{Self}` to hand it its context, or give both workflows the same context type"
)]
pub trait SubContext<T> {
    /// The subworkflow's context, from the outer workflow's.
    fn sub_context(outer: &Arc<Self>) -> Arc<T>;
}

impl<T> SubContext<T> for T {
    fn sub_context(outer: &Arc<Self>) -> Arc<T> {
        Arc::clone(outer)
    }
}
