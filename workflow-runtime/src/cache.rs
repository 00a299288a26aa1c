//! Cached step outputs: what a durable run looks up before it runs a node with a `cache`
//! policy, and keeps after such a node succeeds.
//!
//! An entry is found by its [`CacheKey`]: the step's identity and version, and its inputs
//! as JSON (a dataflow node's arguments; a state-graph node's state, with the graph's
//! structural hash, since the entry also holds the route arm taken). The cache is an
//! optimisation: a key that cannot be made, a store that fails to read or keep an entry,
//! or an entry that no longer decodes, each costs one execution of the step (and a
//! `tracing` warning), never the run.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::events::{EventKind, EventLog};
use crate::graph::{Graph, NodeDef, NodeId, Source};
use crate::private::Nodes;
use crate::step::StepError;
use crate::store::{CacheKey, Store, Timestamp};

/// What a durable dataflow run needs to reuse cached outputs: its store and its input as
/// stored (its nodes move their outputs to and from JSON).
pub(crate) struct NodeCache {
    pub(crate) store: Arc<dyn Store>,
    /// The workflow's input, as stored with the run: the one input's value, or an array
    /// of the inputs.
    pub(crate) input: Value,
}

/// A node's cache entry: where it is kept and how long it lives.
pub(crate) struct Entry {
    key: CacheKey,
    ttl: Duration,
}

impl NodeCache {
    /// The cache entry of `def` in this run, if the node is cached: its key is made from
    /// its arguments (the run's inputs and the outputs of the nodes it reads).
    pub(crate) fn entry(&self, graph: &Graph, def: &NodeDef, run: &dyn Nodes) -> Option<Entry> {
        let ttl = def.policy.cache.filter(|_| !def.pause)?;
        let args: Result<Vec<Value>, StepError> = def
            .inputs
            .iter()
            .map(|&source| match source {
                Source::Input(_) if graph.inputs.len() == 1 => Ok(self.input.clone()),
                Source::Input(index) => Ok(self.input.get(index).cloned().unwrap_or(Value::Null)),
                Source::Node(dep) => match run.save(dep) {
                    Ok(value) => Ok(value),
                    // Read with `.ok()`, and skipped: the step gets `None`.
                    Err(_) if def.optional.contains(&dep) => Ok(Value::Null),
                    Err(error) => Err(error),
                },
            })
            .collect();
        match args {
            Ok(args) => Some(Entry {
                key: CacheKey {
                    step: def.step_id.to_owned(),
                    version: def.version,
                    input: Value::Array(args).to_string(),
                },
                ttl,
            }),
            Err(error) => {
                tracing::warn!(node = def.name, %error, "not cached: the node's inputs do not serialize");
                None
            }
        }
    }

    /// Fills the node's slot from its cache entry, if there is one; emits `cache_hit`.
    pub(crate) async fn lookup(
        &self,
        entry: &Entry,
        run: &dyn Nodes,
        node: NodeId,
        def: &NodeDef,
        log: &EventLog,
    ) -> bool {
        let Some(output) = cached(&*self.store, entry, def).await else {
            return false;
        };
        if let Err(error) = run.restore(node, output) {
            tracing::warn!(node = def.name, %error, "cache entry ignored: it does not decode");
            return false;
        }
        log.emit(EventKind::CacheHit {
            node: def.name.into(),
        });
        true
    }

    /// Keeps the output of a node that just succeeded under its entry.
    pub(crate) async fn keep(&self, entry: Entry, run: &dyn Nodes, node: NodeId, def: &NodeDef) {
        match run.save(node) {
            Ok(output) => keep(&*self.store, entry, output, def).await,
            Err(error) => {
                tracing::warn!(node = def.name, %error, "not cached: the output does not serialize");
            }
        }
    }
}

/// The cache entry of a state-graph node `def` of `graph` (with structural hash
/// `graph_hash`) over the state `state`, if the node is cached.
pub(crate) fn state_entry(
    graph: &Graph,
    graph_hash: &str,
    def: &NodeDef,
    state: &Value,
) -> Option<Entry> {
    let ttl = def.policy.cache.filter(|_| !def.pause)?;
    let input = serde_json::json!({ "graph": graph_hash, "state": state });
    Some(Entry {
        key: CacheKey {
            step: format!("{}@{}.{}", def.step_id, graph.name, def.name),
            version: def.version,
            input: input.to_string(),
        },
        ttl,
    })
}

/// A state-graph node's cached outcome: the state after it and the route arm it took.
pub(crate) async fn state_lookup(
    store: &dyn Store,
    entry: &Entry,
    def: &NodeDef,
) -> Option<(Value, usize)> {
    let mut output = cached(store, entry, def).await?;
    let arm = output.get("arm").and_then(Value::as_u64);
    let state = output.get_mut("state").map(Value::take);
    if let (Some(state), Some(arm)) = (state, arm.and_then(|arm| usize::try_from(arm).ok())) {
        return Some((state, arm));
    }
    tracing::warn!(
        node = def.name,
        "cache entry ignored: not a state and an arm"
    );
    None
}

/// Keeps a state-graph node's outcome under its entry.
pub(crate) async fn state_keep(
    store: &dyn Store,
    entry: Entry,
    state: Value,
    arm: usize,
    def: &NodeDef,
) {
    let output = serde_json::json!({ "state": state, "arm": arm });
    keep(store, entry, output, def).await;
}

async fn cached(store: &dyn Store, entry: &Entry, def: &NodeDef) -> Option<Value> {
    match store.cached(entry.key.clone(), Timestamp::now()).await {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(node = def.name, %error, "cache lookup failed; the step runs");
            None
        }
    }
}

async fn keep(store: &dyn Store, entry: Entry, output: Value, def: &NodeDef) {
    let now = Timestamp::now();
    let ttl = i64::try_from(entry.ttl.as_micros()).unwrap_or(i64::MAX);
    let expires_at = Timestamp(now.0.saturating_add(ttl));
    if let Err(error) = store.cache(entry.key, output, now, expires_at).await {
        tracing::warn!(node = def.name, %error, "the output could not be cached");
    }
}
