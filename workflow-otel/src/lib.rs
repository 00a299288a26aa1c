//! OpenTelemetry export of the `workflow` crate's runs and steps (also `workflow::otel`,
//! with the `workflow` crate's feature `otel`).
//!
//! Every run is a `tracing` span named `workflow.run` (fields `workflow`, `run_id`,
//! `outcome`), and every attempt of a step a child span named `workflow.step` (fields
//! `node`, `step`, `attempt`, `outcome`), whichever thread it runs on. Any `tracing`
//! subscriber sees that structure; this module wires it to OpenTelemetry through
//! `tracing-opentelemetry`, and re-exports the crates it uses so that their versions
//! match.
//!
//! ```no_run
//! use workflow_otel::opentelemetry_sdk::trace::SdkTracerProvider;
//!
//! // In a real program: `.with_batch_exporter(opentelemetry_otlp::SpanExporter::builder()...)`
//! let provider = SdkTracerProvider::builder().build();
//! tracing::subscriber::set_global_default(workflow_otel::subscriber(&provider))
//!     .expect("no other subscriber is set");
//! // ... run workflows: their spans go to the provider's exporter ...
//! provider.shutdown().expect("spans flushed");
//! ```
//!
//! `cargo run -p workflow-otel --example otel` runs the content pipeline this way and
//! prints the span tree it exported.
#![warn(missing_docs)]

pub use opentelemetry;
pub use opentelemetry_sdk;
pub use tracing_opentelemetry;
pub use tracing_subscriber;

use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt as _;

/// A `tracing` subscriber that exports every span (the runs' and steps', and the
/// program's own) to `provider`, under the instrumentation scope `workflow`. Add other
/// layers (`fmt`, filters) with [`SubscriberExt::with`](tracing_subscriber::layer::SubscriberExt::with).
pub fn subscriber(
    provider: &SdkTracerProvider,
) -> impl tracing::Subscriber + Send + Sync + 'static {
    let tracer = provider.tracer("workflow");
    tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// A span exporter that keeps every span in memory: for tests that assert on a run's
/// spans, and for examples. (A program exports to a collector instead.)
///
/// ```
/// use workflow_otel::SpanCollector;
/// use workflow_otel::opentelemetry_sdk::trace::SdkTracerProvider;
///
/// let spans = SpanCollector::default();
/// let provider = SdkTracerProvider::builder()
///     .with_simple_exporter(spans.clone())
///     .build();
/// # let _ = provider;
/// assert!(spans.spans().is_empty());
/// ```
#[derive(Clone, Debug, Default)]
pub struct SpanCollector(Arc<Mutex<Vec<SpanData>>>);

impl SpanCollector {
    /// The spans exported so far, in the order they ended.
    pub fn spans(&self) -> Vec<SpanData> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl SpanExporter for SpanCollector {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batch);
        Ok(())
    }
}
