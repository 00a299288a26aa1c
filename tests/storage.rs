//! Storage growth: a state graph whose state grows by 1 KiB per node for 200 nodes stores
//! on the order of the data itself, not a copy of the state per node; with its history
//! kept, it stores each change once and replays every state exactly.

use workflow::prelude::*;
use workflow::store::{MemoryStore, SqliteStore, Store};
use workflow::{HistoryStep, RunId};

/// Notes that grow by one kilobyte-long item per round.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Notes {
    items: Vec<String>,
}

const ROUNDS: usize = 200;

fn item(n: usize) -> String {
    format!("{n:04}{}", "x".repeat(1020))
}

/// Adds an item; asks for another round until there are `ROUNDS`.
#[step]
fn grow(notes: &mut Notes) -> bool {
    notes.items.push(item(notes.items.len()));
    notes.items.len() < ROUNDS
}

workflow! {
    /// Grows the notes by a kilobyte per round, for 200 rounds.
    pub Grow(state: &mut Notes) {
        grow => match {
            true => grow,
            false => END,
        } max 200 => END;
    }
}

fn json_len(value: &impl serde::Serialize) -> usize {
    serde_json::to_string(value).expect("serializes").len()
}

/// Everything the store holds for the run, as the bytes of its JSON.
async fn stored_bytes(store: &dyn Store, id: RunId) -> usize {
    let record = store.run(id).await.expect("record");
    // A finished run's state checkpoint reads its output back: count what is stored.
    let state = store
        .state(id)
        .await
        .expect("state")
        .filter(|_| record.output.is_none());
    let events = store.events(id, 0).await.expect("events");
    let checkpoints = store.checkpoints(id).await.expect("checkpoints");
    let history = store.history(id).await.expect("history");
    json_len(&record.input)
        + record.output.as_ref().map_or(0, json_len)
        + state.as_ref().map_or(0, |s| json_len(&s.state))
        + events.iter().map(json_len).sum::<usize>()
        + checkpoints
            .iter()
            .map(|c| json_len(&c.output))
            .sum::<usize>()
        + history.iter().map(|c| json_len(&c.patch)).sum::<usize>()
}

async fn grow_once(durable: &Durable<Grow>) -> (RunId, Notes) {
    let handle = durable.start(Notes::default()).await.expect("started");
    let id = handle.id();
    let notes = handle.await.expect("ran");
    assert_eq!(notes.items.len(), ROUNDS);
    (id, notes)
}

async fn check_linear_storage(store: impl Store) {
    let durable = Durable::new(Grow::new(), store);
    let (id, notes) = grow_once(&durable).await;
    let state = json_len(&notes);
    let stored = stored_bytes(&**durable.store(), id).await;
    eprintln!("latest state only: {stored} bytes stored for a final state of {state}");
    assert!(
        stored < 2 * state,
        "stored {stored} bytes for a final state of {state}: over 2x"
    );
    assert!(durable.history(id).await.expect("history").is_empty());
}

#[tokio::test]
async fn a_growing_state_is_stored_once_in_memory() {
    check_linear_storage(MemoryStore::new()).await;
}

#[tokio::test]
async fn a_growing_state_is_stored_once_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("workflow-storage-{}", RunId::new()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    check_linear_storage(SqliteStore::open(dir.join("runs.db")).expect("opened")).await;
    std::fs::remove_dir_all(dir).ok();
}

async fn check_history(store: impl Store) {
    let durable = Durable::new(Grow::new(), store).keep_history();
    let (id, notes) = grow_once(&durable).await;
    let state = json_len(&notes);
    let stored = stored_bytes(&**durable.store(), id).await;
    eprintln!("with history: {stored} bytes stored for a final state of {state}");
    assert!(
        stored < 3 * state,
        "with history, stored {stored} bytes for a final state of {state}: over 3x"
    );
    let history = durable.history(id).await.expect("history");
    assert_eq!(history.len(), ROUNDS);
    for (k, HistoryStep { step, node, state }) in history.iter().enumerate() {
        assert_eq!(*step as usize, k + 1);
        assert_eq!(node, "grow");
        let expected: Vec<String> = (0..=k).map(item).collect();
        assert_eq!(state.items, expected, "the state after step {step}");
    }
}

#[tokio::test]
async fn a_kept_history_stores_each_change_once_and_replays_every_state_in_memory() {
    check_history(MemoryStore::new()).await;
}

#[tokio::test]
async fn a_kept_history_stores_each_change_once_and_replays_every_state_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("workflow-history-{}", RunId::new()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    check_history(SqliteStore::open(dir.join("runs.db")).expect("opened")).await;
    std::fs::remove_dir_all(dir).ok();
}

#[path = "support/pg.rs"]
mod pg;

#[tokio::test]
async fn a_growing_state_is_stored_once_on_postgres() {
    let Some(schema) = pg::PgSchema::new("a_growing_state_is_stored_once_on_postgres") else {
        return;
    };
    check_linear_storage(schema.store().await).await;
    schema.remove().await;
}

#[tokio::test]
async fn a_kept_history_stores_each_change_once_and_replays_every_state_on_postgres() {
    let Some(schema) = pg::PgSchema::new(
        "a_kept_history_stores_each_change_once_and_replays_every_state_on_postgres",
    ) else {
        return;
    };
    check_history(schema.store().await).await;
    schema.remove().await;
}
