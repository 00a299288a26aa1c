//! Runs and steps as OpenTelemetry spans: the content pipeline, with a flaky research step,
//! exported through `workflow::otel`, then the span tree the exporter received.
//!
//! ```text
//! cargo run -p workflow-otel --example otel
//! ```
//!
//! A real program sends the spans to a collector instead (for example with
//! `opentelemetry-otlp`'s exporter in `with_batch_exporter`); everything else stays the same.

// The module also holds the reviewed variant, which only the example runs.
#[allow(dead_code)]
#[path = "../../examples/content_pipeline/pipeline.rs"]
mod pipeline;

use std::time::Duration;

use pipeline::{ContentPipeline, Ctx, Topic};
use workflow::mock::MockLlm;
use workflow_otel::SpanCollector;
use workflow_otel::opentelemetry::trace::SpanId;
use workflow_otel::opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};

#[tokio::main]
async fn main() {
    let spans = SpanCollector::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    // Global, not thread-local: the steps run on the runtime's worker threads.
    tracing::subscriber::set_global_default(workflow_otel::subscriber(&provider))
        .expect("no other subscriber is set");

    let llm = MockLlm::new()
        .with_latency(Duration::from_millis(20))
        .fail_when("[research]", 1);
    let topic = Topic {
        title: "Tracing workflows".into(),
        audience: "operators".into(),
    };
    let published = ContentPipeline::new(Ctx::new(llm))
        .run(topic)
        .await
        .expect("the pipeline succeeds after one retry");
    println!("published {}\n", published.url);
    provider.force_flush().expect("spans flushed");

    let spans = spans.spans();
    for root in spans.iter().filter(|s| s.parent_span_id == SpanId::INVALID) {
        print_tree(&spans, root, 0);
    }
}

/// Prints a span, its attributes and its children, indented.
fn print_tree(spans: &[SpanData], span: &SpanData, depth: usize) {
    let attributes: Vec<String> = span
        .attributes
        .iter()
        .filter(|kv| {
            let key = kv.key.as_str();
            !["code.", "thread.", "target", "busy_ns", "idle_ns"]
                .iter()
                .any(|skip| key.starts_with(skip))
        })
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    let took = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    println!(
        "{:indent$}{} [{}] {:?}",
        "",
        span.name,
        attributes.join(" "),
        took,
        indent = depth * 2
    );
    let id = span.span_context.span_id();
    let mut children: Vec<&SpanData> = spans.iter().filter(|s| s.parent_span_id == id).collect();
    children.sort_by_key(|s| s.start_time);
    for child in children {
        print_tree(spans, child, depth + 1);
    }
}
