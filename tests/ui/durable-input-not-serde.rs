use workflow::prelude::*;
use workflow::store::MemoryStore;

/// An input that is not `Serialize`: fine in memory, not in a store.
pub struct Query {
    pub text: String,
}

#[step]
fn search(query: &Query) -> String {
    query.text.clone()
}

workflow! {
    /// Searches.
    pub Search(query: Query) -> String {
        search(query)
    }
}

fn main() {
    // Runs in memory need no serde...
    let _ = Search::new().run(Query { text: "rust".into() });
    // ...a durable run stores its input.
    let _ = Durable::new(Search::new(), MemoryStore::new());
}
