//! The content pipeline on tokio's paused clock: dataflow scheduling, the exact event trace,
//! and the graph's renderings.

#[path = "../examples/content_pipeline/pipeline.rs"]
#[allow(dead_code)]
mod pipeline;

use std::time::Duration;

use pipeline::{ContentPipeline, Ctx, Topic};
use workflow::mock::MockLlm;
use workflow::prelude::*;

fn topic() -> Topic {
    Topic {
        title: "Typed workflows".into(),
        audience: "Rust developers".into(),
    }
}

/// Every call takes 100 ms, LinkedIn's 1 s. `research` makes three calls in sequence.
fn slow_linkedin() -> ContentPipeline {
    let llm = MockLlm::new()
        .with_latency(Duration::from_millis(100))
        .slow_when("[linkedin]", Duration::from_secs(1));
    ContentPipeline::new(Ctx::new(llm))
}

fn at(events: &[Event], node: &str, started: bool) -> Duration {
    events
        .iter()
        .find(|e| match &e.kind {
            EventKind::StepStarted { node: n, .. } => started && n == node,
            EventKind::StepSucceeded { node: n, .. } => !started && n == node,
            _ => false,
        })
        .map_or_else(|| panic!("no event for {node}"), |e| e.at)
}

#[tokio::test(start_paused = true)]
async fn nodes_start_as_soon_as_their_inputs_exist() {
    let start = tokio::time::Instant::now();
    let handle = slow_linkedin().start(topic());
    let events = handle.events();
    let published = handle.await.expect("the pipeline succeeds");
    let events = events.collect().await;

    // `meta` waits only for `twitter`: it starts and ends while LinkedIn is still writing.
    let linkedin_done = at(&events, "linkedin", false);
    assert!(at(&events, "meta", true) < linkedin_done);
    assert!(at(&events, "meta", false) < linkedin_done);
    assert_eq!(at(&events, "meta", true), Duration::from_millis(500));

    // Critical path: research (3 x 100) + blog_post 100 + linkedin 1000 + publish 100.
    // Level by level it would be 1600 ms: meta's 100 ms would follow the slowest of its level.
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    let summary = RunSummary::new(ContentPipeline::graph(), &events);
    assert_eq!(summary.critical_path, Duration::from_millis(1500));
    assert_eq!(summary.wall_time, summary.critical_path);
    assert_eq!(
        summary.critical_nodes,
        ["research", "post", "linkedin", "checked", "publish"]
    );
    assert_eq!(published.posts.len(), 2);
    assert!(
        published
            .email_subject
            .as_deref()
            .is_some_and(|subject| subject.contains("Typed workflows"))
    );
}

async fn trace() -> Vec<Event> {
    let handle = slow_linkedin().start(topic());
    let events = handle.events();
    handle.await.expect("the pipeline succeeds");
    events.collect().await
}

#[tokio::test(start_paused = true)]
async fn the_event_trace_is_exact_and_stable() {
    let events = trace().await;
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, i as u64, "sequence numbers are gapless");
    }
    assert_eq!(events, trace().await, "two runs give the same trace");
    insta::assert_yaml_snapshot!(events);
}

#[tokio::test(start_paused = true)]
async fn the_output_is_deterministic_and_serializable() {
    let published = slow_linkedin().run(topic()).await.expect("succeeds");
    insta::assert_json_snapshot!(published);
}

#[test]
fn the_graph_renders_as_mermaid_and_dot() {
    let graph = ContentPipeline::graph();
    insta::assert_snapshot!("mermaid", graph.to_mermaid());
    insta::assert_snapshot!("dot", graph.to_dot());
    assert_eq!(graph.nodes.len(), 8);
    assert_eq!(
        graph.doc,
        "One topic in, a blog post and its social posts out."
    );
    let meta = graph.node(graph.find("meta").expect("meta is a node"));
    assert_eq!(meta.step, "meta");
    assert_eq!(meta.output_type, "Meta");
    assert_eq!(
        graph.node(graph.find("post").expect("post")).step,
        "blog_post"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_step_names_itself_and_keeps_its_cause() {
    let llm = MockLlm::new().always_fail_when("[linkedin]");
    let error = ContentPipeline::new(Ctx::new(llm))
        .run(topic())
        .await
        .expect_err("linkedin always fails");
    let RunError::Step { node, step, source } = &error else {
        panic!("expected a step error, got {error:?}");
    };
    assert_eq!((*node, *step), ("linkedin", "linkedin"));
    // Two retries, then the error.
    let cause = source
        .downcast_ref::<workflow::mock::MockLlmError>()
        .expect("the mock's error is kept");
    assert_eq!(cause.pattern, "[linkedin]");
    assert_eq!(
        error.to_string(),
        "step `linkedin` failed: mock LLM: scripted transient failure for prompts containing \"[linkedin]\""
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_email_is_skipped_and_the_posts_still_go_out() {
    let llm = MockLlm::new()
        .with_latency(Duration::from_millis(100))
        .always_fail_when("[email]");
    let handle = ContentPipeline::new(Ctx::new(llm)).start(topic());
    let events = handle.events();
    let published = handle.await.expect("the email is skipped, the run goes on");
    let events = events.collect().await;
    let networks: Vec<&str> = published.posts.iter().map(|p| p.network.as_str()).collect();
    assert_eq!(networks, ["linkedin", "twitter"]);
    assert_eq!(published.email_subject, None);
    assert!(
        published
            .warnings
            .iter()
            .any(|w| w.contains("no newsletter"))
    );
    // Three attempts (the step's two retries), then the skip.
    let email: Vec<&EventKind> = events
        .iter()
        .map(|e| &e.kind)
        .filter(|kind| kind.node() == Some("email"))
        .collect();
    assert_eq!(email.len(), 7, "{email:#?}");
    assert!(matches!(
        email.last(),
        Some(EventKind::StepSkipped { cause, .. }) if cause == "email"
    ));
    let summary = RunSummary::new(ContentPipeline::graph(), &events);
    let outcome = |node: &str| {
        summary
            .steps
            .iter()
            .find(|s| s.node == node)
            .map(|s| s.outcome)
    };
    assert_eq!(outcome("email"), Some(workflow::StepOutcome::Skipped));
    assert_eq!(outcome("publish"), Some(workflow::StepOutcome::Succeeded));
}
