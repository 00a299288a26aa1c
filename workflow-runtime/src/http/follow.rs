//! Following a run's events: the stored ones from a sequence number on, then the live ones,
//! each once and in order, across the parts of a run (a pause and its answer) and whether
//! the run is driven by this process or by another one sharing the store.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::events::{Event, EventKind, EventStream};
use crate::run::{Canceller, RunId};
use crate::store::{Store, StoreError};

/// How often a follower looks at the store for events of a run no part of this process
/// drives (a run in another process, or one waiting for an answer).
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// A run this process drives: the events of its current part, and how to stop it.
#[derive(Clone)]
pub(crate) struct LiveRun {
    pub(crate) events: EventStream,
    pub(crate) canceller: Canceller,
    /// Becomes `true` once this part of the run has ended and its end is stored.
    pub(crate) done: watch::Receiver<bool>,
    /// Tells this part from a later one of the same run.
    generation: u64,
}

/// The runs this process drives, by id.
pub(crate) struct LiveRuns {
    runs: Mutex<HashMap<RunId, LiveRun>>,
    /// Bumped whenever a run is added, so that followers waiting for one wake up.
    changed: watch::Sender<u64>,
    generations: AtomicU64,
}

impl LiveRuns {
    pub(crate) fn new() -> Self {
        Self {
            runs: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            generations: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, LiveRun>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds the current part of a run; returns it, what ends it (`done` is sent `true`) and
    /// its generation, for [`LiveRuns::remove`].
    pub(crate) fn add(
        &self,
        id: RunId,
        events: EventStream,
        canceller: Canceller,
    ) -> (LiveRun, watch::Sender<bool>, u64) {
        let (done_tx, done) = watch::channel(false);
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let run = LiveRun {
            events,
            canceller,
            done,
            generation,
        };
        self.lock().insert(id, run.clone());
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        (run, done_tx, generation)
    }

    /// Removes a part of a run once it has ended, unless a later part replaced it.
    pub(crate) fn remove(&self, id: RunId, generation: u64) {
        let mut runs = self.lock();
        if runs
            .get(&id)
            .is_some_and(|run| run.generation == generation)
        {
            runs.remove(&id);
        }
    }

    pub(crate) fn get(&self, id: RunId) -> Option<LiveRun> {
        self.lock().get(&id).cloned()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// Whether an event ends the run for good (a pause does not: the answer continues it).
pub(crate) fn is_final(event: &Event) -> bool {
    matches!(
        event.kind,
        EventKind::RunFinished { .. }
            | EventKind::RunFailed { .. }
            | EventKind::RunCancelled { .. }
    )
}

/// Every event of a run from `next` on, each once and in order, until the run ends.
pub(crate) struct Follower {
    store: Arc<dyn Store>,
    live: Arc<LiveRuns>,
    id: RunId,
    /// The sequence number of the next event to give.
    next: u64,
    ready: VecDeque<Event>,
    /// The current part's events, when this process drives it.
    stream: Option<EventStream>,
    changes: watch::Receiver<u64>,
    ended: bool,
}

impl Follower {
    pub(crate) fn new(store: Arc<dyn Store>, live: Arc<LiveRuns>, id: RunId, from: u64) -> Self {
        let changes = live.subscribe();
        Self {
            store,
            live,
            id,
            next: from,
            ready: VecDeque::new(),
            stream: None,
            changes,
            ended: false,
        }
    }

    /// The next event; `None` once the run's final event has been given (or the run ended
    /// without one).
    pub(crate) async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(event) = self.ready.pop_front() {
                if event.seq < self.next {
                    continue;
                }
                self.next = event.seq + 1;
                self.ended = is_final(&event);
                return Some(Ok(event));
            }
            if let Some(stream) = &mut self.stream {
                match stream.next().await {
                    Some(event) => self.ready.push_back(event),
                    // This part of the run ended (it finished, or it waits for an answer):
                    // what follows, if anything, comes from the store or a later part.
                    None => self.stream = None,
                }
                continue;
            }
            match self.store.events(self.id, self.next).await {
                Ok(events) if !events.is_empty() => {
                    self.ready.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    self.ended = true;
                    return Some(Err(error));
                }
            }
            // Seen before looking, so that a part added after the look still wakes us.
            self.changes.borrow_and_update();
            if let Some(run) = self.live.get(self.id)
                && run.events.first_seq() <= self.next
            {
                let mut stream = run.events;
                stream.seek(self.next);
                self.stream = Some(stream);
                continue;
            }
            match self.store.run(self.id).await {
                Ok(record) if record.status.is_final() => {
                    // Its last events may have been stored since the look above.
                    match self.store.events(self.id, self.next).await {
                        Ok(events) if !events.is_empty() => self.ready.extend(events),
                        Ok(_) => self.ended = true,
                        Err(error) => {
                            self.ended = true;
                            return Some(Err(error));
                        }
                    }
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    self.ended = true;
                    return Some(Err(error));
                }
            }
            tokio::select! {
                _ = self.changes.changed() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}
