//! Runs and steps as `tracing` spans. In a test binary of its own: a subscriber set for one
//! thread (`with_default`) races with other tests' threads registering the same callsites
//! at once, which can leave a span's callsite disabled for it (`tracing` caches each
//! callsite's interest process-wide).

#[path = "support/flaky.rs"]
mod flaky;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use flaky::{Attempts, Flaky};
use workflow::Parallelism;
use workflow::prelude::*;

#[derive(Default, Clone)]
struct Spans(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = FieldText(String::new());
        span.record(&mut fields);
        let mut spans = self.0.lock().expect("lock");
        spans.push(format!("{}{}", span.metadata().name(), fields.0));
        tracing::span::Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut fields = FieldText(String::new());
        values.record(&mut fields);
        let mut spans = self.0.lock().expect("lock");
        let index = usize::try_from(span.into_u64()).expect("small") - 1;
        spans[index].push_str(&fields.0);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

struct FieldText(String);

impl tracing::field::Visit for FieldText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() != "run_id" {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

#[test]
fn runs_and_steps_are_tracing_spans() {
    let spans = Spans::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    tracing::subscriber::with_default(spans.clone(), || {
        runtime.block_on(async {
            Flaky::new(Attempts::default())
                .with_options(RunOptions::new().parallelism(Parallelism::SingleTask))
                .run(7)
                .await
                .expect("succeeds");
        });
    });
    let spans = spans.0.lock().expect("lock").clone();
    assert_eq!(
        spans,
        [
            "workflow.run workflow=\"Flaky\" outcome=\"succeeded\"",
            "workflow.step node=\"flaky\" step=\"flaky\" attempt=1 outcome=\"retrying\"",
            "workflow.step node=\"flaky\" step=\"flaky\" attempt=2 outcome=\"retrying\"",
            "workflow.step node=\"flaky\" step=\"flaky\" attempt=3 outcome=\"succeeded\"",
        ]
    );
}
