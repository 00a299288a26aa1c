//! State graphs: edges, routes, loop bounds, the step limit, failures and retries over the
//! state, cancellation, and subworkflows both ways with their events nested.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use workflow::prelude::*;
use workflow::{SubContext, Target};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Draft {
    text: String,
    score: u32,
    /// The score at which the review passes.
    goal: u32,
    log: Vec<String>,
}

impl Draft {
    fn aiming_at(goal: u32) -> Self {
        Self {
            goal,
            ..Self::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    Revise,
}

#[step]
fn write(draft: &mut Draft) {
    draft.text = "draft".into();
    draft.log.push("write".into());
}

#[step]
fn review(draft: &mut Draft) -> Verdict {
    draft.log.push(format!("review {}", draft.score));
    if draft.score >= draft.goal {
        Verdict::Pass
    } else {
        Verdict::Revise
    }
}

#[step]
async fn revise(draft: &mut Draft) -> Result<(), StepError> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    draft.score += 1;
    draft.log.push("revise".into());
    Ok(())
}

workflow! {
    /// Writes, then reviews and revises until the review passes, at most 4 reviews.
    ReviewLoop(draft: &mut Draft) {
        write -> review;
        review => match {
            Verdict::Pass => END,
            Verdict::Revise => revise,
        } max 4 => END;
        revise -> review;
    }
}

/// One line per event: its kind and names (times are checked separately).
fn kinds(events: &[Event]) -> Vec<String> {
    events.iter().map(|event| kind(&event.kind)).collect()
}

fn kind(kind: &EventKind) -> String {
    if let EventKind::Nested { node, inner } = kind {
        return format!("[{node}] {}", self::kind(inner));
    }
    let json = serde_json::to_value(kind).expect("events serialize");
    let mut line = json["event"].as_str().unwrap_or("?").to_owned();
    for key in ["node", "arm", "to", "max"] {
        if let Some(value) = json.get(key) {
            let value = value.to_string();
            line = format!("{line} {key}={}", value.trim_matches('"'));
        }
    }
    line
}

#[tokio::test(start_paused = true)]
async fn the_loop_runs_until_the_route_says_end() {
    let handle = ReviewLoop::new().start(Draft::aiming_at(2));
    let events = handle.events();
    let out = handle.await.expect("the review passes");
    assert_eq!(out.score, 2);
    assert_eq!(
        out.log,
        [
            "write", "review 0", "revise", "review 1", "revise", "review 2"
        ]
    );
    let events = events.collect().await;
    insta::assert_yaml_snapshot!(kinds(&events));
    // Two revisions of 10 ms each; everything else is instant.
    assert_eq!(events.last().map(|e| e.at), Some(Duration::from_millis(20)));
}

#[tokio::test(start_paused = true)]
async fn the_bound_ends_the_loop_and_says_so() {
    let handle = ReviewLoop::new().start(Draft::aiming_at(100));
    let events = handle.events();
    let out = handle.await.expect("the bound ends the run at END");
    // Four reviews, three revisions in between: the fourth review would loop again.
    assert_eq!(out.score, 3);
    assert_eq!(
        out.log.iter().filter(|l| l.starts_with("review")).count(),
        4
    );
    let events = events.collect().await;
    let hit: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::LoopBoundHit { .. }))
        .collect();
    assert_eq!(hit.len(), 1);
    assert_eq!(
        hit[0].kind,
        EventKind::LoopBoundHit {
            node: "review".into(),
            max: 4,
            arm: "Verdict::Revise".into(),
            to: "END".into(),
        }
    );
    insta::assert_yaml_snapshot!(kinds(&events));
}

#[tokio::test]
async fn at_the_threshold_the_first_review_passes() {
    let out = ReviewLoop::new().run(Draft::aiming_at(0)).await.unwrap();
    assert_eq!(out.log, ["write", "review 0"]);
}

#[step]
fn spin(draft: &mut Draft) -> bool {
    draft.score += 1;
    draft.score < draft.goal
}

workflow! {
    /// Spins up to a million times: only the run's step limit stops it sooner.
    Spin(draft: &mut Draft) {
        spin => match {
            true => spin,
            false => END,
        } max 1_000_000 => END;
    }
}

#[tokio::test]
async fn the_step_limit_stops_a_long_loop_with_a_clear_error() {
    let handle = Spin::new()
        .with_options(RunOptions::new().max_steps(10))
        .start(Draft::aiming_at(u32::MAX));
    let events = handle.events();
    let error = handle.await.expect_err("the limit is hit");
    assert!(
        matches!(
            error,
            RunError::StepLimit {
                limit: 10,
                node: "spin"
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the run reached its limit of 10 steps before `END` (next was `spin`): bound the loop that keeps it going, or raise the limit with `RunOptions::max_steps`"
    );
    let events = events.collect().await;
    let started = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::StepStarted { .. }))
        .count();
    assert_eq!(started, 10);
    assert!(matches!(
        events.last().map(|e| &e.kind),
        Some(EventKind::RunFailed { node, .. }) if node == "spin"
    ));
}

#[tokio::test]
async fn the_default_step_limit_is_documented_and_applies() {
    assert_eq!(workflow::DEFAULT_MAX_STEPS, 1_000);
    let error = Spin::new()
        .run(Draft::aiming_at(u32::MAX))
        .await
        .unwrap_err();
    assert!(matches!(error, RunError::StepLimit { limit: 1_000, .. }));
    let out = Spin::new().run(Draft::aiming_at(500)).await.unwrap();
    assert_eq!(out.score, 500);
}

/// Context: counts attempts of `flaky`, which fails its first `fail_first` attempts after
/// writing to the state.
struct Ctx {
    attempts: AtomicU32,
    fail_first: u32,
}

#[step(retries = 2, backoff = "1s..1s", jitter = "none")]
async fn flaky(ctx: &Ctx, draft: &mut Draft) -> Result<(), StepError> {
    draft.log.push("flaky wrote this".into());
    tokio::task::yield_now().await;
    let attempt = ctx.attempts.fetch_add(1, Ordering::SeqCst) + 1;
    if attempt <= ctx.fail_first {
        return Err(StepError::msg(format!("attempt {attempt} failed")));
    }
    Ok(())
}

#[step]
fn finish(ctx: &Ctx, draft: &mut Draft) {
    draft
        .log
        .push(format!("{} attempts", ctx.attempts.load(Ordering::SeqCst)));
}

workflow! {
    /// A fallible node with retries, then a plain one; both borrow the context.
    Retrying(ctx: Ctx, draft: &mut Draft) {
        flaky -> finish -> END;
    }
}

fn retrying(fail_first: u32) -> Retrying {
    Retrying::new(Ctx {
        attempts: AtomicU32::new(0),
        fail_first,
    })
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_leaves_no_writes_in_the_state() {
    let start = tokio::time::Instant::now();
    let out = retrying(2).run(Draft::default()).await.unwrap();
    // Three attempts wrote a line each; only the successful one's write is kept.
    assert_eq!(out.log, ["flaky wrote this", "3 attempts"]);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_node_that_fails_for_good_fails_the_run() {
    let handle = retrying(10).start(Draft::default());
    let events = handle.events();
    let error = handle.await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "step `flaky` failed: attempt 3 failed",
        "{error:?}"
    );
    let events = events.collect().await;
    assert!(!events.iter().any(|e| e.kind.node() == Some("finish")));
    assert!(matches!(
        events.last().map(|e| &e.kind),
        Some(EventKind::RunFailed { node, .. }) if node == "flaky"
    ));
}

#[step]
async fn forever(draft: &mut Draft) {
    draft.log.push("waiting".into());
    std::future::pending::<()>().await;
}

workflow! {
    /// Never ends on its own.
    Forever(draft: &mut Draft) {
        write -> forever -> END;
    }
}

#[tokio::test]
async fn a_state_graph_can_be_cancelled() {
    let handle = Forever::new().start(Draft::default());
    let mut events = handle.events();
    while let Some(event) = events.next().await {
        if matches!(&event.kind, EventKind::StepStarted { node, .. } if node == "forever") {
            break;
        }
    }
    handle.cancel();
    assert!(matches!(handle.await, Err(RunError::Cancelled)));
    assert!(matches!(
        events.collect().await.last().map(|e| &e.kind),
        Some(EventKind::RunCancelled { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_state_graph_past_its_deadline_fails() {
    let error = Forever::new()
        .with_options(RunOptions::new().deadline(Duration::from_secs(2)))
        .run(Draft::default())
        .await
        .expect_err("never finishes");
    assert!(
        matches!(error, RunError::DeadlineExceeded { .. }),
        "{error:?}"
    );
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bug,
    Question,
    Other,
}

#[step]
fn classify(draft: &mut Draft) -> (Kind, u32) {
    let kind = if draft.text.contains("crash") {
        Kind::Bug
    } else if draft.text.ends_with('?') {
        Kind::Question
    } else {
        Kind::Other
    };
    (kind, draft.score)
}

#[step]
fn urgent(draft: &mut Draft) {
    draft.log.push("urgent".into());
}

#[step]
fn triage(draft: &mut Draft) {
    draft.log.push("triage".into());
}

#[step]
fn answer(draft: &mut Draft) {
    draft.log.push("answer".into());
}

workflow! {
    /// Routes a ticket by kind and priority: patterns, guards, several patterns per arm.
    Router(draft: &mut Draft) {
        classify => match {
            (Kind::Bug, p) if p >= 5 => urgent,
            (Kind::Bug | Kind::Other, _) => triage,
            (Kind::Question, _) => answer,
        };
        urgent -> triage;
        triage -> END;
        answer -> END;
    }
}

#[tokio::test]
async fn routes_match_with_patterns_and_guards() {
    let ticket = |text: &str, score| Draft {
        text: text.into(),
        score,
        ..Draft::default()
    };
    let router = Router::new();
    let log = |draft: Draft| async { router.run(draft).await.unwrap().log };
    assert_eq!(log(ticket("it crashed", 7)).await, ["urgent", "triage"]);
    assert_eq!(log(ticket("it crashed", 1)).await, ["triage"]);
    assert_eq!(log(ticket("how?", 9)).await, ["answer"]);
    assert_eq!(log(ticket("hello", 9)).await, ["triage"]);
}

#[test]
fn the_graph_describes_edges_routes_and_bounds() {
    let graph = ReviewLoop::graph();
    let def = graph.state_graph().expect("a state graph");
    assert_eq!(def.state_type, "Draft");
    assert_eq!(graph.nodes[def.start.index()].name, "write");
    let transitions: Vec<_> = graph
        .transitions()
        .map(|t| {
            let to = match t.to {
                Target::Node(id) => graph.node(id).name,
                Target::End => "END",
            };
            (graph.node(t.from).name, to, t.pattern, t.bound)
        })
        .collect();
    assert_eq!(
        transitions,
        [
            ("write", "review", None, None),
            ("review", "END", Some("Verdict::Pass"), None),
            ("review", "revise", Some("Verdict::Revise"), None),
            ("review", "END", None, Some(4)),
            ("revise", "review", None, None),
        ]
    );
    insta::assert_snapshot!("review_loop_mermaid", graph.to_mermaid());
    insta::assert_snapshot!("router_mermaid", Router::graph().to_mermaid());
    insta::assert_snapshot!("review_loop_dot", graph.to_dot());
}

// Subworkflows, both ways.

#[step]
fn outline(draft: &Draft) -> Vec<String> {
    vec![format!("outline of {}", draft.text)]
}

#[step]
async fn sources(draft: &Draft) -> Vec<String> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    vec![format!("sources for {}", draft.text)]
}

#[step]
fn merge(draft: &Draft, outline: &[String], sources: &[String]) -> Draft {
    let mut draft = draft.clone();
    draft.log.extend(outline.iter().cloned());
    draft.log.extend(sources.iter().cloned());
    draft
}

workflow! {
    /// Parallel work inside one node of a state graph: outline and sources at once.
    Research(draft: Draft) -> Draft {
        let outline = outline(draft);
        let sources = sources(draft);
        merge(draft, outline, sources)
    }
}

workflow! {
    /// A state graph with a dataflow workflow as one of its nodes.
    Article(draft: &mut Draft) {
        write -> Research -> review;
        review => match {
            Verdict::Pass => END,
            Verdict::Revise => revise,
        } max 3 => END;
        revise -> review;
    }
}

#[tokio::test(start_paused = true)]
async fn a_dataflow_workflow_runs_as_one_node_of_a_state_graph() {
    let handle = Article::new().start(Draft::aiming_at(1));
    let events = handle.events();
    let out = handle.await.unwrap();
    assert_eq!(
        out.log,
        [
            "write",
            "outline of draft",
            "sources for draft",
            "review 0",
            "revise",
            "review 1"
        ]
    );
    let events = events.collect().await;
    insta::assert_yaml_snapshot!(kinds(&events));
    // The inner run's events sit between the node's start and its success.
    let position = |wanted: &EventKind| events.iter().position(|e| &e.kind == wanted);
    let started = position(&EventKind::StepStarted {
        node: "Research".into(),
        attempt: 1,
    })
    .unwrap();
    let inner: Vec<_> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.kind, EventKind::Nested { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        inner.len(),
        8,
        "run started, 3 x (started, succeeded), run finished"
    );
    assert!(inner.iter().all(|&i| i > started));
    insta::assert_snapshot!("article_mermaid", Article::graph().to_mermaid());
}

#[step]
fn topic(name: &str) -> Draft {
    Draft {
        text: name.to_owned(),
        goal: 2,
        ..Draft::default()
    }
}

#[step]
fn headline(draft: &Draft) -> String {
    format!("{} ({} revisions)", draft.text, draft.score)
}

workflow! {
    /// A dataflow workflow with a state graph as one of its steps.
    Publish(name: String) -> String {
        let draft = topic(name);
        let reviewed = ReviewLoop(draft);
        headline(reviewed)
    }
}

#[tokio::test(start_paused = true)]
async fn a_state_graph_runs_as_a_step_of_a_dataflow_workflow() {
    let handle = Publish::new().start("typed workflows".to_owned());
    let events = handle.events();
    assert_eq!(handle.await.unwrap(), "draft (2 revisions)");
    let events = events.collect().await;
    let nested: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Nested { node, inner } => Some((node.as_ref(), inner.node())),
            _ => None,
        })
        .collect();
    assert!(nested.iter().all(|(node, _)| *node == "reviewed"));
    assert!(nested.contains(&("reviewed", Some("revise"))));
    insta::assert_yaml_snapshot!(kinds(&events));
}

/// A context the inner workflow needs, kept inside the outer one.
struct Inner {
    suffix: String,
}

struct Outer {
    inner: Arc<Inner>,
}

impl SubContext<Inner> for Outer {
    fn sub_context(outer: &Arc<Self>) -> Arc<Inner> {
        Arc::clone(&outer.inner)
    }
}

#[step]
fn decorate(ctx: &Inner, text: &str) -> String {
    format!("{text}{}", ctx.suffix)
}

workflow! {
    /// Decorates a text with its context's suffix.
    Decorate(ctx: Inner, text: String) -> String {
        decorate(text)
    }
}

#[step]
fn shout(text: &str) -> String {
    text.to_uppercase()
}

workflow! {
    /// Runs `Decorate` with a context of its own.
    Loud(ctx: Outer, text: String) -> String {
        let decorated = Decorate(text);
        shout(decorated)
    }
}

#[tokio::test]
async fn a_subworkflow_with_another_context_gets_it_through_sub_context() {
    let loud = Loud::new(Outer {
        inner: Arc::new(Inner { suffix: "!".into() }),
    });
    assert_eq!(loud.run("hey".to_owned()).await.unwrap(), "HEY!");
}

#[step]
fn explode(text: &str) -> Result<String, StepError> {
    Err(StepError::msg(format!("cannot handle {text}")))
}

workflow! {
    /// Always fails.
    Explode(text: String) -> String {
        explode(text)
    }
}

workflow! {
    /// Runs a failing subworkflow.
    Outer2(text: String) -> String {
        let exploded = Explode(text);
        shout(exploded)
    }
}

#[tokio::test]
async fn a_failing_subworkflow_fails_its_node() {
    let handle = Outer2::new().start("x".to_owned());
    let events = handle.events();
    let error = handle.await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "node `exploded` (step `Explode`) failed: step `explode` failed: cannot handle x"
    );
    let events = events.collect().await;
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::Nested { node, inner } if node == "exploded"
            && matches!(**inner, EventKind::RunFailed { .. })
    )));
}

// ---------------------------------------------------------------------------------------
// Policies at the call site

/// Fails its first two calls; declares no retries of its own.
#[step]
fn unsteady(ctx: &AtomicU32, draft: &mut Draft) -> Result<(), StepError> {
    draft.log.push("unsteady".into());
    if ctx.fetch_add(1, Ordering::SeqCst) < 2 {
        return Err(StepError::msg("not yet"));
    }
    Ok(())
}

workflow! {
    /// The node gets the retries its step does not declare.
    Steady(ctx: AtomicU32, draft: &mut Draft) {
        write -> #[node(retries = 2, backoff = "1s..2s", jitter = "none")] unsteady -> END;
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_of_a_state_graph_takes_policy_options_at_its_mention() {
    let graph = Steady::graph();
    let node = graph.node(graph.find("unsteady").expect("a node"));
    assert_eq!(node.policy.retries, 2);
    assert_eq!(<unsteady as Step>::POLICY.retries, 0);
    let start = tokio::time::Instant::now();
    let draft = Steady::new(AtomicU32::new(0))
        .run(Draft::default())
        .await
        .expect("the third attempt succeeds");
    // Failed attempts leave no writes: one `unsteady` in the log.
    assert_eq!(draft.log, ["write", "unsteady"]);
    // 1 s, then 2 s, between the attempts.
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}
