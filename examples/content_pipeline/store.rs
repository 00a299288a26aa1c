//! Fault injection for the crash test: a store that has this process killed while a
//! checkpoint is being written.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use workflow::Event;
use workflow::RunId;
use workflow::store::{
    CacheKey, Checkpoint, Interrupt, Progress, RunRecord, RunStatus, StateChange, StateCheckpoint,
    Store, StoreFuture, Timestamp,
};

/// A store that sends this process SIGKILL (as the OOM killer would) while its N-th
/// checkpoint write is in flight, and otherwise passes everything through.
pub(crate) struct KillDuringCheckpoint {
    inner: Arc<dyn Store>,
    countdown: AtomicUsize,
}

impl KillDuringCheckpoint {
    pub(crate) fn new(inner: Arc<dyn Store>, n: usize) -> Self {
        Self {
            inner,
            countdown: AtomicUsize::new(n),
        }
    }
}

impl Store for KillDuringCheckpoint {
    fn create_run(&self, run: RunRecord) -> StoreFuture<'_, ()> {
        self.inner.create_run(run)
    }

    fn append_events(&self, run: RunId, events: Vec<Event>) -> StoreFuture<'_, ()> {
        self.inner.append_events(run, events)
    }

    fn checkpoint(
        &self,
        run: RunId,
        checkpoints: Vec<Checkpoint>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        if self.countdown.fetch_sub(1, Ordering::SeqCst) != 1 {
            return self.inner.checkpoint(run, checkpoints, events);
        }
        // The write runs while `kill` is on its way; whatever the write has done when the
        // signal lands is what the restarted process finds.
        let write = self.inner.checkpoint(run, checkpoints, events);
        Box::pin(async move {
            // The shell's own `kill`: no procps needed.
            let kill = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("kill -9 {}", std::process::id()))
                .spawn();
            let _ = write.await;
            if let Ok(mut kill) = kill {
                let _ = kill.wait();
            }
            std::future::pending().await
        })
    }

    fn save_state(
        &self,
        run: RunId,
        state: StateCheckpoint,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.inner.save_state(run, state, events)
    }

    fn state(&self, run: RunId) -> StoreFuture<'_, Option<StateCheckpoint>> {
        self.inner.state(run)
    }

    fn suspend(&self, run: RunId, interrupt: Interrupt, events: Vec<Event>) -> StoreFuture<'_, ()> {
        self.inner.suspend(run, interrupt, events)
    }

    fn interrupt(&self, run: RunId) -> StoreFuture<'_, Option<Interrupt>> {
        self.inner.interrupt(run)
    }

    fn answer(
        &self,
        run: RunId,
        node: String,
        progress: Progress,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.inner.answer(run, node, progress, events)
    }

    fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        output: Option<serde_json::Value>,
        error: Option<String>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.inner.finish_run(run, status, output, error, events)
    }

    fn run(&self, run: RunId) -> StoreFuture<'_, RunRecord> {
        self.inner.run(run)
    }

    fn runs(&self, limit: usize) -> StoreFuture<'_, Vec<RunRecord>> {
        self.inner.runs(limit)
    }

    fn checkpoints(&self, run: RunId) -> StoreFuture<'_, Vec<Checkpoint>> {
        self.inner.checkpoints(run)
    }

    fn events(&self, run: RunId, from: u64) -> StoreFuture<'_, Vec<Event>> {
        self.inner.events(run, from)
    }

    fn history(&self, run: RunId) -> StoreFuture<'_, Vec<StateChange>> {
        self.inner.history(run)
    }

    fn cached(&self, key: CacheKey, now: Timestamp) -> StoreFuture<'_, Option<serde_json::Value>> {
        self.inner.cached(key, now)
    }

    fn cache(
        &self,
        key: CacheKey,
        output: serde_json::Value,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreFuture<'_, ()> {
        self.inner.cache(key, output, now, expires_at)
    }
}
