//! The in-memory store.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{
    Checkpoint, RunRecord, RunStatus, Store, StoreError, StoreFuture, Timestamp, check_sequence,
};
use crate::events::Event;
use crate::run::RunId;

/// Keeps runs in memory: for tests, and for runs that need no durability. Nothing survives
/// the process.
#[derive(Default)]
pub struct MemoryStore {
    runs: Mutex<HashMap<RunId, Entry>>,
}

struct Entry {
    record: RunRecord,
    checkpoints: Vec<Checkpoint>,
    events: Vec<Event>,
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
            check_sequence(run, entry.events.len() as u64, &events)?;
            entry.events.extend(events);
            Ok(())
        });
        ready(result)
    }

    fn checkpoint(
        &self,
        run: RunId,
        checkpoint: Checkpoint,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        let result = self.with_run(run, |entry| {
            open(entry)?;
            if entry.checkpoints.iter().any(|c| c.node == checkpoint.node) {
                return Err(StoreError::AlreadyCompleted {
                    run,
                    node: checkpoint.node,
                });
            }
            check_sequence(run, entry.events.len() as u64, &events)?;
            entry.checkpoints.push(checkpoint);
            entry.events.extend(events);
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
            check_sequence(run, entry.events.len() as u64, &events)?;
            entry.events.extend(events);
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
}
