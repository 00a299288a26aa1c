//! The trait every generated workflow type implements.

use crate::graph::Graph;

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
}
