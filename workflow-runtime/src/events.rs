//! The typed event stream of a run.
//!
//! Every run records what happens to it as a sequence of [`Event`]s with gapless, monotonic
//! sequence numbers. Progress displays, logs, summaries and snapshot tests all read this
//! stream. Subscribers see every event from the first one, whenever they subscribe, exactly
//! once and in order.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

/// One thing that happened during a run.
///
/// Serializes flat, with the kind under `event`:
///
/// ```
/// use std::time::Duration;
/// use workflow::{Event, EventKind};
///
/// let event = Event {
///     seq: 3,
///     at: Duration::from_millis(250),
///     kind: EventKind::StepSucceeded {
///         node: "research".into(),
///         attempt: 1,
///         duration: Duration::from_millis(200),
///     },
/// };
/// assert_eq!(
///     serde_json::to_string(&event).unwrap(),
///     r#"{"seq":3,"at_us":250000,"event":"step_succeeded","node":"research","attempt":1,"duration_us":200000}"#
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// The event's position in its run: 0, 1, 2, ... without gaps.
    pub seq: u64,
    /// When it happened, since the run started (on tokio's clock, so a paused clock in tests
    /// gives exact, repeatable values).
    #[serde(rename = "at_us", with = "micros")]
    pub at: Duration,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an [`Event`] reports.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The run started.
    RunStarted {
        /// The workflow's name.
        workflow: Cow<'static, str>,
    },
    /// An attempt of a node started.
    StepStarted {
        /// The node's name.
        node: Cow<'static, str>,
        /// The attempt number, from 1.
        attempt: u32,
    },
    /// A node's attempt succeeded; its output is available to its dependents.
    StepSucceeded {
        /// The node's name.
        node: Cow<'static, str>,
        /// The attempt that succeeded.
        attempt: u32,
        /// How long that attempt took.
        #[serde(rename = "duration_us", with = "micros")]
        duration: Duration,
    },
    /// A node's attempt failed and will be retried after `delay`.
    StepRetrying {
        /// The node's name.
        node: Cow<'static, str>,
        /// The attempt that failed.
        attempt: u32,
        /// Why it failed.
        error: String,
        /// How long the node waits before the next attempt.
        #[serde(rename = "delay_us", with = "micros")]
        delay: Duration,
    },
    /// A node failed for good (its last attempt failed, or the error was permanent).
    StepFailed {
        /// The node's name.
        node: Cow<'static, str>,
        /// The attempt that failed.
        attempt: u32,
        /// Why it failed.
        error: String,
        /// How long that attempt took.
        #[serde(rename = "duration_us", with = "micros")]
        duration: Duration,
    },
    /// A node was skipped: it failed for good and its failure policy says skip, or a node
    /// it needs was skipped. It has no output.
    StepSkipped {
        /// The node's name.
        node: Cow<'static, str>,
        /// The node whose failure caused the skip (this node itself when it failed).
        cause: Cow<'static, str>,
    },
    /// A node failed for good and its fallback takes over: the fallback value becomes its
    /// output, or the fallback step runs (its attempts continue the node's numbering).
    FallbackUsed {
        /// The node's name.
        node: Cow<'static, str>,
        /// The fallback step, or `None` for a fallback value.
        step: Option<Cow<'static, str>>,
    },
    /// A route chose where a state graph goes next.
    Routed {
        /// The node whose return value was matched.
        node: Cow<'static, str>,
        /// The arm that matched, as written.
        arm: Cow<'static, str>,
        /// The next node, or `END`.
        to: Cow<'static, str>,
    },
    /// A route's loop bound was hit: its `match` picked an arm that loops, but the route had
    /// run its last round, so the run goes where the bound says.
    LoopBoundHit {
        /// The route's node.
        node: Cow<'static, str>,
        /// The bound (the route's rounds in this run).
        max: u32,
        /// The arm the `match` picked.
        arm: Cow<'static, str>,
        /// Where the run goes instead: the bound's target.
        to: Cow<'static, str>,
    },
    /// An event of a subworkflow that `node` runs, as the subworkflow's own stream has it
    /// (subworkflows of subworkflows nest further).
    Nested {
        /// The node of this run that runs the subworkflow.
        node: Cow<'static, str>,
        /// The subworkflow's event.
        inner: Box<EventKind>,
    },
    /// A stored run was taken up again (after a crash, a stop, or an answer to its pause):
    /// its completed nodes were loaded from their checkpoints, not run again.
    RunResumed {
        /// The workflow's name.
        workflow: Cow<'static, str>,
        /// How many nodes were loaded from their checkpoints.
        restored: u32,
    },
    /// A pause node asked for outside input: the run is stored as waiting, and this part of
    /// it ends here. Answering resumes it.
    RunWaiting {
        /// The pause node.
        node: Cow<'static, str>,
        /// The time this part of the run took.
        #[serde(rename = "duration_us", with = "micros")]
        duration: Duration,
    },
    /// The answer to a pause arrived: it is the pause node's output.
    Answered {
        /// The pause node.
        node: Cow<'static, str>,
    },
    /// A node's output was taken from the cache (same step, version and inputs within the
    /// time to live): the step did not run.
    CacheHit {
        /// The node's name.
        node: Cow<'static, str>,
    },
    /// The run produced its output.
    RunFinished {
        /// The run's wall time.
        #[serde(rename = "duration_us", with = "micros")]
        duration: Duration,
    },
    /// The run failed because a node failed.
    RunFailed {
        /// The node that failed.
        node: Cow<'static, str>,
        /// Why it failed.
        error: String,
        /// The run's wall time.
        #[serde(rename = "duration_us", with = "micros")]
        duration: Duration,
    },
    /// The run was cancelled from its handle.
    RunCancelled {
        /// The run's wall time.
        #[serde(rename = "duration_us", with = "micros")]
        duration: Duration,
    },
}

impl EventKind {
    /// Whether this event ends its run (nothing follows it).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::RunFinished { .. }
                | Self::RunFailed { .. }
                | Self::RunCancelled { .. }
                | Self::RunWaiting { .. }
        )
    }

    /// The node this event is about, if any.
    pub fn node(&self) -> Option<&str> {
        match self {
            Self::StepStarted { node, .. }
            | Self::StepSucceeded { node, .. }
            | Self::StepRetrying { node, .. }
            | Self::StepFailed { node, .. }
            | Self::StepSkipped { node, .. }
            | Self::FallbackUsed { node, .. }
            | Self::Routed { node, .. }
            | Self::LoopBoundHit { node, .. }
            | Self::Nested { node, .. }
            | Self::RunWaiting { node, .. }
            | Self::Answered { node }
            | Self::CacheHit { node } => Some(node),
            _ => None,
        }
    }
}

mod micros {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        let micros: u64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_micros(micros))
    }
}

/// The in-memory log of one run's events, shared by the run and its subscribers.
#[repr(C)]
pub(crate) struct EventLog {
    /// A cache line's worth of room between the counts of the `Arc` the log is shared by
    /// (every step's attempt clones it) and what every event reads: the workers' threads
    /// write the counts by turns, and a line that one thread writes is taken from the
    /// other's cache. (Room, not alignment: an aligned allocation costs more per run.)
    _apart: Apart,
    fixed: Fixed,
    /// The same room between what every event reads and the lock every event takes.
    _apart_too: Apart,
    state: Mutex<LogState>,
}

/// A cache line's worth of bytes, to keep fields that threads write apart from fields that
/// they read.
struct Apart(#[expect(dead_code, reason = "room between fields, never read")] [u8; 64]);

/// An [`EventLog`]'s fields that never change.
struct Fixed {
    start: Instant,
    /// The sequence number of the first event of this log: 0, or where a resumed run's
    /// stored log ends.
    first: u64,
    /// The time of the first event, for a resumed run: when its stored log ended.
    offset: Duration,
    /// The run's idempotency key prefix: its id, or for a subworkflow's run, the key of the
    /// step that runs it.
    key: Arc<str>,
    /// For the run of a subworkflow: the log of the run whose node runs it, and that
    /// node's name. Every event is also recorded there, as [`EventKind::Nested`]. (Read by
    /// every event, so kept with the fields that never change: on the line of the lock, a
    /// thread's read of it would wait for the line the other thread just wrote.)
    parent: Option<(Arc<EventLog>, Cow<'static, str>)>,
}

#[derive(Default)]
struct LogState {
    events: Vec<Event>,
    closed: bool,
    wakers: Vec<Waker>,
}

impl EventLog {
    pub(crate) fn new(key: Arc<str>) -> Self {
        Self::resumed(key, 0, Duration::ZERO)
    }

    /// The log of a stored run taken up again: its first event is number `first`, at
    /// `offset` into the run.
    pub(crate) fn resumed(key: Arc<str>, first: u64, offset: Duration) -> Self {
        Self {
            _apart: Apart([0; 64]),
            _apart_too: Apart([0; 64]),
            fixed: Fixed {
                start: Instant::now(),
                first,
                offset,
                key,
                parent: None,
            },
            state: Mutex::new(LogState::default()),
        }
    }

    /// The log of a subworkflow's run, nested in the log of the run whose `node` runs it.
    pub(crate) fn nested(parent: Arc<EventLog>, node: Cow<'static, str>) -> Self {
        let key = format!("{}/{node}", parent.fixed.key).into();
        let mut log = Self::new(key);
        log.fixed.parent = Some((parent, node));
        log
    }

    /// Makes room for `additional` more events (a run that knows how many it will emit
    /// grows its log once instead of doubling it as it goes).
    pub(crate) fn reserve(&self, additional: usize) {
        self.lock().events.reserve(additional);
    }

    /// The idempotency key prefix of the run's steps.
    pub(crate) fn key(&self) -> &str {
        &self.fixed.key
    }

    /// Time since the run started (for a resumed run: since its first part started, not
    /// counting the time it was stopped).
    pub(crate) fn elapsed(&self) -> Duration {
        self.fixed.offset + self.fixed.start.elapsed()
    }

    /// The sequence number the next event will get.
    pub(crate) fn next_seq(&self) -> u64 {
        self.fixed.first + self.lock().events.len() as u64
    }

    /// The events from sequence number `from` on (for a store).
    pub(crate) fn since(&self, from: u64) -> Vec<Event> {
        let state = self.lock();
        let skip = usize::try_from(from.saturating_sub(self.fixed.first)).unwrap_or(usize::MAX);
        state.events.get(skip..).unwrap_or_default().to_vec()
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A subscriber that panicked while holding the lock leaves the log consistent: every
        // critical section is a push or a read.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends an event. A terminal event closes the log; nothing is appended after it, so
    /// a step that finishes after its run was cancelled adds nothing.
    pub(crate) fn emit(&self, kind: EventKind) {
        self.emit_at(self.elapsed(), kind);
    }

    /// Appends an event that happened at `at` (a reading of [`EventLog::elapsed`] the
    /// caller needed anyway: a step's start and end are one clock read each).
    pub(crate) fn emit_at(&self, at: Duration, kind: EventKind) {
        if let Some((parent, node)) = &self.fixed.parent {
            parent.emit(EventKind::Nested {
                node: node.clone(),
                inner: Box::new(kind.clone()),
            });
        }
        let wakers = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.closed = kind.is_terminal();
            let seq = self.fixed.first + state.events.len() as u64;
            state.events.push(Event { seq, at, kind });
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    fn poll_at(&self, cursor: usize, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let mut state = self.lock();
        if let Some(event) = state.events.get(cursor) {
            return Poll::Ready(Some(event.clone()));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A subscription to a run's events: every event from the run's first, in order, then the
/// live ones as they happen; ends after the run's terminal event.
///
/// Implements [`futures_core::Stream`]; [`EventStream::next`] needs no trait import.
///
/// # Examples
///
/// ```
/// use workflow::prelude::*;
///
/// #[step]
/// fn greet(name: &String) -> String {
///     format!("hello, {name}")
/// }
///
/// workflow! {
///     /// Greets someone.
///     pub Greeter(name: String) -> String {
///         greet(name)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = Greeter::new().start("Ada".to_owned());
/// let mut events = handle.events();
/// let output = handle.await.unwrap();
/// assert_eq!(output, "hello, Ada");
/// let mut kinds = Vec::new();
/// while let Some(event) = events.next().await {
///     kinds.push(event.kind);
/// }
/// assert!(matches!(kinds.first(), Some(EventKind::RunStarted { .. })));
/// assert!(matches!(kinds.last(), Some(EventKind::RunFinished { .. })));
/// # }
/// ```
#[derive(Clone)]
pub struct EventStream {
    log: Arc<EventLog>,
    cursor: usize,
}

impl EventStream {
    pub(crate) fn new(log: Arc<EventLog>) -> Self {
        Self { log, cursor: 0 }
    }

    /// The sequence number of the log's first event: 0, or for a run taken up again, where
    /// its stored log ended.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn first_seq(&self) -> u64 {
        self.log.fixed.first
    }

    /// The sequence number of the event [`EventStream::next`] gives next.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn position(&self) -> u64 {
        self.log.fixed.first + self.cursor as u64
    }

    /// Moves on to event `seq` (no further back than the log's first event).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn seek(&mut self, seq: u64) {
        self.cursor =
            usize::try_from(seq.saturating_sub(self.log.fixed.first)).unwrap_or(usize::MAX);
    }

    /// The events logged so far from the stream's position on, without waiting or moving.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn snapshot(&self) -> Vec<Event> {
        self.log.since(self.position())
    }

    /// The next event, waiting for it if the run is still going; `None` once the run's
    /// terminal event has been read.
    pub async fn next(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Reads every remaining event until the run ends.
    pub async fn collect(mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let polled = self.log.poll_at(self.cursor, cx);
        if let Poll::Ready(Some(_)) = &polled {
            self.cursor += 1;
        }
        polled
    }
}

impl futures_core::Stream for EventStream {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().poll_event(cx)
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}
