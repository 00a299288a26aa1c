//! A PostgreSQL schema per test, in the database `WORKFLOW_PG_URL` names.

use workflow::RunId;
use workflow::store::PostgresStore;

/// A schema of its own in the database `WORKFLOW_PG_URL` names, dropped by
/// [`PgSchema::remove`] at the end of a test that passed (a failed test leaves it to look
/// at). `None`, with a notice, when the variable is not set (`.ci/run` always sets it).
pub(crate) struct PgSchema {
    pub(crate) url: String,
    pub(crate) name: String,
}

impl PgSchema {
    pub(crate) fn new(test: &str) -> Option<Self> {
        let Ok(url) = std::env::var("WORKFLOW_PG_URL") else {
            eprintln!("skipping {test}: WORKFLOW_PG_URL is not set (a PostgreSQL URL)");
            return None;
        };
        let name = format!("test_{}", RunId::new().to_string().replace('-', ""));
        Some(Self { url, name })
    }

    pub(crate) async fn store(&self) -> PostgresStore {
        PostgresStore::connect_in_schema(&self.url, &self.name)
            .await
            .expect("connected")
    }

    /// The database URL of the schema, for child processes (its `search_path` in the
    /// connection options).
    #[allow(dead_code)] // not every test runs child processes
    pub(crate) fn url_in_schema(&self) -> String {
        let join = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{join}options=-c%20search_path%3D{}", self.url, self.name)
    }

    /// Drops the schema and everything in it.
    pub(crate) async fn remove(self) {
        self.execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await;
    }

    /// Runs SQL in the schema, on a connection of its own.
    pub(crate) async fn execute(&self, sql: &str) {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connected");
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("SET search_path = {}; {sql}", self.name))
            .await
            .expect("executed");
        drop(client);
        let _ = task.await;
    }
}
