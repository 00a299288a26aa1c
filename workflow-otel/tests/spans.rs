//! Runs and steps reach OpenTelemetry as spans: one `workflow.run` span per run, one
//! `workflow.step` child per attempt (even on other threads), with the run id, workflow,
//! node, attempt and outcome as attributes.

#[path = "../../examples/content_pipeline/pipeline.rs"]
#[allow(dead_code)]
mod pipeline;

use std::collections::BTreeMap;
use std::time::Duration;

use pipeline::{ContentPipeline, Ctx, Topic};
use workflow::mock::MockLlm;
use workflow_otel::SpanCollector;
use workflow_otel::opentelemetry::trace::SpanId;
use workflow_otel::opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};

fn attributes(span: &SpanData) -> BTreeMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_steps_are_exported_as_a_span_tree() {
    let spans = SpanCollector::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    // Global: the steps run on the runtime's worker threads. (This file holds one test.)
    tracing::subscriber::set_global_default(workflow_otel::subscriber(&provider)).unwrap();

    // `research` fails once: its node has two attempts.
    let llm = MockLlm::new()
        .with_latency(Duration::from_millis(5))
        .fail_when("[research]", 1);
    let topic = Topic {
        title: "Spans".into(),
        audience: "operators".into(),
    };
    let handle = ContentPipeline::new(Ctx::new(llm)).start(topic);
    let run_id = handle.id().to_string();
    handle.await.expect("succeeds after one retry");
    provider.force_flush().unwrap();
    let spans = spans.spans();

    let runs: Vec<&SpanData> = spans.iter().filter(|s| s.name == "workflow.run").collect();
    assert_eq!(runs.len(), 1);
    let run = runs[0];
    assert_eq!(run.parent_span_id, SpanId::INVALID);
    let run_attributes = attributes(run);
    assert_eq!(run_attributes["workflow"], "ContentPipeline");
    assert_eq!(run_attributes["run_id"], run_id);
    assert_eq!(run_attributes["outcome"], "succeeded");

    let steps: Vec<&SpanData> = spans.iter().filter(|s| s.name == "workflow.step").collect();
    // Eight nodes, research twice.
    assert_eq!(steps.len(), 9);
    let mut seen: Vec<(String, String, String)> = steps
        .iter()
        .map(|step| {
            assert_eq!(
                step.parent_span_id,
                run.span_context.span_id(),
                "every step span is a child of its run's span"
            );
            let a = attributes(step);
            (
                a["node"].clone(),
                a["attempt"].clone(),
                a["outcome"].clone(),
            )
        })
        .collect();
    seen.sort();
    let research: Vec<_> = seen
        .iter()
        .filter(|(node, ..)| node == "research")
        .collect();
    assert_eq!(
        research,
        [
            &("research".into(), "1".into(), "retrying".into()),
            &("research".into(), "2".into(), "succeeded".into()),
        ]
    );
    assert!(
        seen.iter()
            .filter(|(node, ..)| node != "research")
            .all(|(_, attempt, outcome)| attempt == "1" && outcome == "succeeded"),
        "{seen:?}"
    );
}
