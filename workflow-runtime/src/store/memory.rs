//! The in-memory store.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{
    CacheKey, Checkpoint, Interrupt, Progress, RunRecord, RunStatus, StateChange, StateCheckpoint,
    Store, StoreError, StoreFuture, Timestamp, check_sequence,
};
use crate::events::Event;
use crate::run::RunId;

/// Keeps runs in memory: for tests, and for runs that need no durability. Nothing survives
/// the process.
#[derive(Default)]
pub struct MemoryStore {
    runs: Mutex<HashMap<RunId, Entry>>,
    /// Cached step outputs, with when each expires.
    cache: Mutex<HashMap<CacheKey, (serde_json::Value, Timestamp)>>,
}

struct Entry {
    record: RunRecord,
    checkpoints: Vec<Checkpoint>,
    /// The nodes of `checkpoints`, to check a new checkpoint in constant time, once there
    /// are more than [`SCAN_LIMIT`] (below that, a scan is as fast and needs no memory).
    completed: HashSet<String>,
    /// The latest state checkpoint of a state graph.
    state: Option<StateCheckpoint>,
    /// Its history, when the run keeps one.
    history: Vec<StateChange>,
    /// The interrupt the run waits on, while it is waiting.
    interrupt: Option<Interrupt>,
    events: Vec<Event>,
}

/// Up to how many checkpoints a run's completed nodes are found by a scan.
const SCAN_LIMIT: usize = 16;

impl Entry {
    /// Whether `node` has a checkpoint.
    fn is_completed(&self, node: &str) -> bool {
        if self.checkpoints.len() <= SCAN_LIMIT {
            self.checkpoints.iter().any(|c| c.node == node)
        } else {
            self.completed.contains(node)
        }
    }

    /// Checks that none of `checkpoints` is completed already, or in the batch twice.
    fn check_new(&self, checkpoints: &[Checkpoint]) -> Result<(), StoreError> {
        let mut batch = HashSet::with_capacity(checkpoints.len());
        for checkpoint in checkpoints {
            let node = checkpoint.node.as_str();
            if self.is_completed(node) || !batch.insert(node) {
                return Err(StoreError::AlreadyCompleted {
                    run: self.record.id,
                    node: checkpoint.node.clone(),
                });
            }
        }
        Ok(())
    }

    /// Records checkpoints that `check_new` accepted.
    fn add_checkpoints(&mut self, checkpoints: Vec<Checkpoint>) {
        self.checkpoints.extend(checkpoints);
        if self.checkpoints.len() > SCAN_LIMIT {
            let known = self.completed.len();
            let new = self.checkpoints[known..].iter().map(|c| c.node.clone());
            self.completed.extend(new);
        }
    }

    /// Replaces the state checkpoint, moving its change (if any) to the history.
    fn set_state(&mut self, mut state: StateCheckpoint) {
        if let Some(patch) = state.change.take() {
            self.history.push(StateChange {
                step: state.step,
                node: state.node.clone(),
                patch,
            });
        }
        self.state = Some(state);
    }

    /// Checks that `events` continue the log.
    fn check_events(&self, events: &[Event]) -> Result<(), StoreError> {
        check_sequence(self.record.id, self.events.len() as u64, events)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RunId, Entry>> {
        // Every write checks before it changes anything, so a panic cannot leave a half
        // write behind: the data is consistent even if the lock was poisoned.
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_run<T>(
        &self,
        run: RunId,
        f: impl FnOnce(&mut Entry) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut runs = self.lock();
        let entry = runs.get_mut(&run).ok_or(StoreError::UnknownRun(run))?;
        f(entry)
    }
}

fn open(entry: &Entry) -> Result<(), StoreError> {
    if entry.record.status.is_final() {
        return Err(StoreError::Ended(entry.record.id));
    }
    Ok(())
}

/// A result that is ready: the memory store never waits.
fn ready<T: Send + 'static>(result: Result<T, StoreError>) -> StoreFuture<'static, T> {
    Box::pin(std::future::ready(result))
}

impl Store for MemoryStore {
    fn create_run(&self, run: RunRecord) -> StoreFuture<'_, ()> {
        let result = {
            let mut runs = self.lock();
            match runs.entry(run.id) {
                std::collections::hash_map::Entry::Occupied(_) => {
                    Err(StoreError::DuplicateRun(run.id))
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Entry {
                        record: run,
                        checkpoints: Vec::new(),
                        completed: HashSet::new(),
                        state: None,
                        history: Vec::new(),
                        interrupt: None,
                        events: Vec::new(),
                    });
                    Ok(())
                }
            }
        };
        ready(result)
    }

    fn append_events(&self, run: RunId, events: Vec<Event>) -> StoreFuture<'_, ()> {
        let result = self.with_run(run, |entry| {
            open(entry)?;
            entry.check_events(&events)?;
            entry.events.extend(events);
            Ok(())
        });
        ready(result)
    }

    fn checkpoint(
        &self,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        let result = self.with_run(run, |entry| {
            open(entry)?;
            if let Some((checkpoint, statement)) = checkpoints
                .iter()
                .find_map(|c| c.writes.first().map(|statement| (c, statement)))
            {
                return Err(StoreError::Statement {
                    run,
                    node: checkpoint.node.clone(),
                    sql: statement.sql.clone(),
                    error: "the in-memory store has no database to run it in".to_owned(),
                });
            }
            entry.check_new(&checkpoints)?;
            entry.check_events(&events)?;
            entry.add_checkpoints(checkpoints);
            entry.events.extend(events);
            entry.record.updated_at = Timestamp::now();
            Ok(())
        });
        ready(result)
    }

    fn save_state(
        &self,
        run: RunId,
        state: StateCheckpoint,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        let result = self.with_run(run, |entry| {
            open(entry)?;
            if let Some(statement) = state.writes.first() {
                return Err(StoreError::Statement {
                    run,
                    node: state.node.clone(),
                    sql: statement.sql.clone(),
                    error: "the in-memory store has no database to run it in".to_owned(),
                });
            }
            entry.check_events(&events)?;
            entry.set_state(state);
            entry.events.extend(events);
            entry.record.updated_at = Timestamp::now();
            Ok(())
        });
        ready(result)
    }

    fn state(&self, run: RunId) -> StoreFuture<'_, Option<StateCheckpoint>> {
        let result = self.with_run(run, |entry| {
            let mut state = entry.state.clone();
            if let (Some(state), RunStatus::Succeeded, Some(output)) =
                (&mut state, entry.record.status, &entry.record.output)
            {
                state.state = output.clone();
            }
            Ok(state)
        });
        ready(result)
    }

    fn history(&self, run: RunId) -> StoreFuture<'_, Vec<StateChange>> {
        let result = self.with_run(run, |entry| Ok(entry.history.clone()));
        ready(result)
    }

    fn suspend(&self, run: RunId, interrupt: Interrupt, events: Vec<Event>) -> StoreFuture<'_, ()> {
        let result = self.with_run(run, |entry| {
            open(entry)?;
            entry.check_events(&events)?;
            entry.events.extend(events);
            // A waiting run may wait for days, and many may wait at once: keep no spare
            // capacity.
            entry.events.shrink_to_fit();
            entry.checkpoints.shrink_to_fit();
            entry.interrupt = Some(interrupt);
            entry.record.status = RunStatus::Waiting;
            entry.record.updated_at = Timestamp::now();
            Ok(())
        });
        ready(result)
    }

    fn interrupt(&self, run: RunId) -> StoreFuture<'_, Option<Interrupt>> {
        let result = self.with_run(run, |entry| {
            Ok(match entry.record.status {
                RunStatus::Waiting => entry.interrupt.clone(),
                _ => None,
            })
        });
        ready(result)
    }

    fn answer(
        &self,
        run: RunId,
        node: String,
        progress: Progress,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        let result = self.with_run(run, |entry| {
            let waiting = entry.interrupt.as_ref().map(|i| i.node.as_str());
            super::check_answer(run, entry.record.status, waiting, &node)?;
            if let Progress::Nodes(checkpoints) = &progress {
                entry.check_new(checkpoints)?;
            }
            entry.check_events(&events)?;
            match progress {
                Progress::Nodes(checkpoints) => entry.add_checkpoints(checkpoints),
                Progress::State(state) => entry.set_state(state),
            }
            entry.events.extend(events);
            entry.interrupt = None;
            entry.record.status = RunStatus::Running;
            entry.record.updated_at = Timestamp::now();
            Ok(())
        });
        ready(result)
    }

    fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        output: Option<serde_json::Value>,
        error: Option<String>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        let result = self.with_run(run, |entry| {
            open(entry)?;
            entry.check_events(&events)?;
            entry.events.extend(events);
            if status.is_final() {
                entry.interrupt = None;
            }
            if status == RunStatus::Succeeded
                && let Some(state) = &mut entry.state
            {
                // The output is the final state: keep it once (`state` reads it back).
                state.state = serde_json::Value::Null;
            }
            let record = &mut entry.record;
            record.status = status;
            record.output = output;
            record.error = error;
            record.updated_at = Timestamp::now();
            Ok(())
        });
        ready(result)
    }

    fn run(&self, run: RunId) -> StoreFuture<'_, RunRecord> {
        let result = self.with_run(run, |entry| Ok(entry.record.clone()));
        ready(result)
    }

    fn runs(&self, limit: usize) -> StoreFuture<'_, Vec<RunRecord>> {
        let mut records: Vec<RunRecord> = self.lock().values().map(|e| e.record.clone()).collect();
        records.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
        records.truncate(limit);
        ready(Ok(records))
    }

    fn count_runs(&self, status: RunStatus) -> StoreFuture<'_, u64> {
        let count = self
            .lock()
            .values()
            .filter(|entry| entry.record.status == status)
            .count();
        ready(Ok(count as u64))
    }

    fn checkpoints(&self, run: RunId) -> StoreFuture<'_, Vec<Checkpoint>> {
        let result = self.with_run(run, |entry| Ok(entry.checkpoints.clone()));
        ready(result)
    }

    fn events(&self, run: RunId, from: u64) -> StoreFuture<'_, Vec<Event>> {
        let result = self.with_run(run, |entry| {
            let from = usize::try_from(from).unwrap_or(usize::MAX);
            Ok(entry.events.get(from..).unwrap_or_default().to_vec())
        });
        ready(result)
    }

    fn cached(&self, key: CacheKey, now: Timestamp) -> StoreFuture<'_, Option<serde_json::Value>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let found = cache
            .get(&key)
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(output, _)| output.clone());
        ready(Ok(found))
    }

    fn cache(
        &self,
        key: CacheKey,
        output: serde_json::Value,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreFuture<'_, ()> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.retain(|_, (_, expires)| *expires > now);
        cache.insert(key, (output, expires_at));
        ready(Ok(()))
    }
}
