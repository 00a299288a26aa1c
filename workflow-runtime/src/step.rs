//! The step contract: what `#[step]` generates for every step function, and the error a
//! step fails with.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::graph::Graph;
use crate::policy::Policy;

/// The boxed error type a [`StepError`] carries as its source.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What `#[step]` generates for a step function: a companion type with the same name that
/// describes the step to `workflow!`.
///
/// You do not implement this trait by hand; `#[step]` does. Its associated items let a
/// workflow name a step's output type and read its default policy without seeing the
/// function itself.
///
/// # Examples
///
/// ```
/// use workflow::prelude::*;
///
/// #[step(retries = 2)]
/// fn double(x: &u32) -> u32 {
///     x * 2
/// }
///
/// assert_eq!(<double as Step>::NAME, "double");
/// assert_eq!(<double as Step>::POLICY.retries, 2);
/// assert_eq!(double(&21), 42); // the function stays callable on its own
/// ```
pub trait Step {
    /// The value the step produces (the `T` of `T` or `Result<T, E>`). `#[step]` asserts
    /// that it is a [`StepOutput`], with the error at the step's return type. (A bound here
    /// would repeat that error as serde's, once per missing trait.)
    type Output;
    /// The step's name, as shown in events and graphs.
    const NAME: &'static str;
    /// The Rust type of the output, as written in the step's signature.
    const OUTPUT_TYPE: &'static str;
    /// The step's default policy (retries, backoff, timeout), from `#[step(...)]`.
    const POLICY: Policy;
    /// For a workflow used as a step (a subworkflow): its graph.
    const SUBGRAPH: Option<&'static Graph> = None;
    /// Whether the step is a pause: it returns a [`Pause`] and its node waits for the
    /// answer, which becomes the node's output.
    const PAUSE: bool = false;
    /// The step's identity across builds: its module path and function name. Cached
    /// outputs are kept under it (see [`Policy::cache`]).
    const ID: &'static str = Self::NAME;
    /// The step's version, `#[step(version = N)]` (1 by default): a cached output is reused
    /// only by the version that made it, so raising it retires the older outputs.
    const VERSION: u32 = 1;
}

/// What a pause step returns: a request for outside input (a person's approval, an edit)
/// of type `Request`, answered later with a `Reply`.
///
/// A step returning `Pause<Request, Reply>` (or `Result<Pause<Request, Reply>, E>`) is a
/// node of its own: when the run reaches it, every node before it is checkpointed, the
/// request is stored and the run waits (its process may exit). A later
/// [`Durable::answer`](crate::Durable::answer) with a `Reply` resumes it: the reply is the
/// node's output (in a dataflow workflow, what the nodes wired to it receive; in a state
/// graph, what its route matches on, after [`Answer::apply`] gave it to the state). The
/// step itself does not run again.
///
/// # Examples
///
/// ```
/// use workflow::prelude::*;
///
/// #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// pub enum Decision {
///     Approve,
///     Reject { reason: String },
/// }
///
/// /// Asks an editor to approve the draft.
/// #[step]
/// fn approval(draft: &String) -> Pause<String, Decision> {
///     Pause::new(format!("Publish this? {draft}"))
/// }
///
/// assert!(<approval as Step>::PAUSE);
/// assert_eq!(<approval as Step>::OUTPUT_TYPE, "Decision");
/// ```
pub struct Pause<Request, Reply> {
    request: Result<serde_json::Value, String>,
    kind: std::marker::PhantomData<fn(Request) -> Reply>,
}

impl<Request: serde::Serialize, Reply> Pause<Request, Reply> {
    /// Asks for a `Reply`, with `request` as what the person (or system) answering sees.
    pub fn new(request: Request) -> Self {
        Self {
            request: serde_json::to_value(&request).map_err(|error| error.to_string()),
            kind: std::marker::PhantomData,
        }
    }
}

impl<Request, Reply> Pause<Request, Reply> {
    /// The request, as the error that stops the step's node (what `#[step]` generates).
    #[doc(hidden)]
    pub fn into_step_error(self) -> StepError {
        match self.request {
            Ok(request) => StepError {
                kind: ErrorKind::Paused,
                source: Box::new(PauseRequest(request)),
            },
            Err(error) => {
                StepError::msg(format!("the pause request does not serialize: {error}")).permanent()
            }
        }
    }
}

impl<Request, Reply> fmt::Debug for Pause<Request, Reply> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pause")
            .field("request", &self.request)
            .finish()
    }
}

/// How the answer to a pause in a state graph changes the graph's state `S`.
///
/// In a dataflow workflow the answer is the pause node's output; in a state graph, nodes
/// only share the state, so the answer must say what it changes there (an approval may
/// change nothing; an edit replaces a text). The route after the pause node then matches
/// on the answer.
#[diagnostic::on_unimplemented(
    message = "the answer `{Self}` to a pause in a state graph over `{S}` must say how it changes the state",
    label = "`{Self}` does not implement `workflow::Answer<{S}>`",
    note = "implement it: `impl workflow::Answer<{S}> for {Self} {{ fn apply(&self, state: &mut {S}) {{ ... }} }}`"
)]
pub trait Answer<S> {
    /// Gives the answer to the state.
    fn apply(&self, state: &mut S);
}

/// The payload of a [`StepError`] of kind [`ErrorKind::Paused`].
#[derive(Debug)]
struct PauseRequest(serde_json::Value);

impl fmt::Display for PauseRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the step paused for outside input")
    }
}

impl StdError for PauseRequest {}

/// The bounds every step output satisfies, so that it can be checkpointed, shipped to
/// another worker, streamed to a client or snapshotted in a test.
#[diagnostic::on_unimplemented(
    message = "the output type `{Self}` of this step is not serializable",
    label = "step outputs must implement `Serialize + DeserializeOwned + Send + Sync + 'static`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait StepOutput:
    serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
}

#[diagnostic::do_not_recommend]
impl<T> StepOutput for T where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
}

/// Why a step failed.
///
/// A step function may return `Result<T, E>` for any `E: std::error::Error + Send + Sync`,
/// or `Result<T, StepError>` directly; `?` converts any such error into a `StepError`.
///
/// `StepError` does not implement [`std::error::Error`] itself (like `anyhow::Error`, that
/// would collide with the blanket conversion); use [`StepError::source_error`] or
/// [`StepError::as_dyn_error`] to reach the cause.
///
/// # Examples
///
/// ```
/// use workflow::StepError;
///
/// fn parse(text: &str) -> Result<u32, StepError> {
///     let n: u32 = text.parse()?; // ParseIntError converts
///     if n == 0 {
///         return Err(StepError::msg("zero is not allowed"));
///     }
///     Ok(n)
/// }
/// assert_eq!(parse("7").unwrap(), 7);
/// assert_eq!(parse("0").unwrap_err().to_string(), "zero is not allowed");
/// assert!(parse("x").unwrap_err().to_string().contains("invalid digit"));
/// ```
pub struct StepError {
    kind: ErrorKind,
    source: BoxError,
}

/// What kind of failure a [`StepError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The step returned an error; retried if the policy allows.
    Failed,
    /// The step returned an error marked permanent; never retried.
    Permanent,
    /// The attempt ran past its timeout and was cancelled; retried if the policy allows.
    TimedOut,
    /// The step panicked; never retried.
    Panicked,
    /// Not a failure: a pause step asked for outside input (see [`Pause`]).
    Paused,
}

#[derive(Debug)]
struct Message(Cow<'static, str>);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Message {}

impl StepError {
    /// A step error with a plain message.
    pub fn msg(message: impl Into<Cow<'static, str>>) -> Self {
        Self::from_boxed(Box::new(Message(message.into())))
    }

    /// A step error wrapping an already boxed error.
    pub fn from_boxed(source: BoxError) -> Self {
        Self {
            kind: ErrorKind::Failed,
            source,
        }
    }

    /// Marks this error permanent: the step is not retried, whatever its policy says
    /// (for example a 400-style answer that no retry can fix).
    #[must_use]
    pub fn permanent(mut self) -> Self {
        self.kind = ErrorKind::Permanent;
        self
    }

    pub(crate) fn timed_out(after: Duration) -> Self {
        Self {
            kind: ErrorKind::TimedOut,
            source: Box::new(Message(format!("timed out after {after:?}").into())),
        }
    }

    pub(crate) fn panicked(message: &str) -> Self {
        Self {
            kind: ErrorKind::Panicked,
            source: Box::new(Message(format!("panicked: {message}").into())),
        }
    }

    /// For a pause step's request: the request, as JSON.
    pub fn pause_request(&self) -> Option<&serde_json::Value> {
        if self.kind == ErrorKind::Paused {
            self.source.downcast_ref::<PauseRequest>().map(|r| &r.0)
        } else {
            None
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether a retry could help: true for plain failures and timeouts.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Failed | ErrorKind::TimedOut)
    }

    /// The underlying error.
    pub fn source_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }

    /// The underlying error as a plain `dyn Error`, for `source()` chains.
    pub fn as_dyn_error(&self) -> &(dyn StdError + 'static) {
        &*self.source
    }

    /// Tries to downcast the underlying error to a concrete type.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.source.downcast_ref::<E>()
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for StepError {
    fn from(error: E) -> Self {
        Self::from_boxed(Box::new(error))
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

/// Converts a step function's error type into a [`StepError`].
///
/// Implemented for `StepError` itself and for every `std::error::Error + Send + Sync +
/// 'static`. Generated code calls it; you rarely name it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as a step's error type",
    label = "a step's error must implement `std::error::Error + Send + Sync + 'static`, or be `StepError`",
    note = "wrap other errors with `StepError::msg(..)` or `StepError::from_boxed(..)`"
)]
pub trait IntoStepError {
    /// Performs the conversion.
    fn into_step_error(self) -> StepError;
}

impl IntoStepError for StepError {
    fn into_step_error(self) -> StepError {
        self
    }
}

impl<E: StdError + Send + Sync + 'static> IntoStepError for E {
    fn into_step_error(self) -> StepError {
        StepError::from(self)
    }
}
