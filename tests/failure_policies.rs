//! Per-node policies declared in `workflow!`: overriding a step's retries, backoff and
//! timeout at the call site, and what happens when a node fails for good (fail, skip,
//! fallback value, fallback step). On tokio's paused clock, so every delay is exact.

// Steps borrow their inputs as the producing node's output type.
#![allow(clippy::ptr_arg)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use workflow::prelude::*;
use workflow::{Event, StepOutcome};

/// Scripts which steps fail, and counts how often each one ran.
#[derive(Default)]
struct Script {
    /// Step name -> how many of its first calls fail (`u32::MAX`: all of them).
    failures: HashMap<&'static str, u32>,
    /// Steps whose failures are permanent (never retried).
    permanent: Vec<&'static str>,
    calls: Mutex<HashMap<&'static str, u32>>,
}

impl Script {
    fn failing(mut self, step: &'static str, times: u32) -> Self {
        self.failures.insert(step, times);
        self
    }

    fn permanently_failing(mut self, step: &'static str) -> Self {
        self.permanent.push(step);
        self.failing(step, u32::MAX)
    }

    /// Records a call of `step` and fails it if the script says so.
    fn call(&self, step: &'static str) -> Result<(), StepError> {
        let mut calls = self.calls.lock().unwrap();
        let n = calls.entry(step).or_default();
        *n += 1;
        if *n > self.failures.get(step).copied().unwrap_or(0) {
            return Ok(());
        }
        let error = StepError::msg(format!("{step} is down (call {n})"));
        Err(if self.permanent.contains(&step) {
            error.permanent()
        } else {
            error
        })
    }

    fn calls(&self, step: &str) -> u32 {
        self.calls.lock().unwrap().get(step).copied().unwrap_or(0)
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Sent {
    posts: Vec<String>,
    newsletter: Option<String>,
}

#[step]
async fn linkedin(ctx: &Script, post: &String) -> Result<String, StepError> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    ctx.call("linkedin")?;
    Ok(format!("linkedin: {post}"))
}

#[step]
async fn twitter(ctx: &Script, post: &String) -> Result<String, StepError> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    ctx.call("twitter")?;
    Ok(format!("twitter: {post}"))
}

/// Declares no retries; the workflow gives it two.
#[step]
async fn email(ctx: &Script, post: &String) -> Result<String, StepError> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    ctx.call("email")?;
    Ok(format!("email: {post}"))
}

#[step]
fn send_email(ctx: &Script, email: &String) -> Result<u32, StepError> {
    ctx.call("send_email")?;
    Ok(u32::try_from(email.len()).unwrap_or(u32::MAX))
}

#[step]
fn publish(
    ctx: &Script,
    linkedin: &String,
    tweet: &String,
    email: Option<&String>,
) -> Result<Sent, StepError> {
    ctx.call("publish")?;
    Ok(Sent {
        posts: vec![linkedin.clone(), tweet.clone()],
        newsletter: email.cloned(),
    })
}

workflow! {
    /// A failing email must not stop the social posts.
    Announce(ctx: Script, post: String) -> Sent {
        let linkedin = linkedin(post);
        let tweet = twitter(post);
        #[node(retries = 2, backoff = "1s..10s", jitter = "none", on_failure = skip)]
        let email = email(post);
        let _ = send_email(email);
        publish(linkedin, tweet, email.ok())
    }
}

/// One line per event, as it serializes.
fn trace(events: &[Event]) -> String {
    events
        .iter()
        .map(|event| serde_json::to_string(event).expect("events serialize"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn run_announce(script: Script) -> (Result<Sent, RunError>, Vec<Event>, Arc<Script>) {
    let script = Arc::new(script);
    let handle = Announce::with_context(Arc::clone(&script)).start("Hello".to_owned());
    let events = handle.events();
    let result = handle.await;
    (result, events.collect().await, script)
}

#[tokio::test(start_paused = true)]
async fn a_skipped_node_and_what_needs_it_are_skipped_and_the_rest_goes_on() {
    let (result, events, script) = run_announce(Script::default().failing("email", u32::MAX)).await;
    let sent = result.expect("the run goes on without the email");
    assert_eq!(
        sent,
        Sent {
            posts: vec!["linkedin: Hello".into(), "twitter: Hello".into()],
            newsletter: None,
        }
    );
    // The node's override: three attempts (1 + 2 retries), 1 s then 2 s apart.
    assert_eq!(script.calls("email"), 3);
    assert_eq!(script.calls("send_email"), 0);
    assert_eq!(script.calls("publish"), 1);
    let summary = RunSummary::new(Announce::graph(), &events);
    let outcome = |node: &str| {
        summary
            .steps
            .iter()
            .find(|step| step.node == node)
            .map(|step| step.outcome)
    };
    assert_eq!(outcome("email"), Some(StepOutcome::Skipped));
    assert_eq!(outcome("send_email"), Some(StepOutcome::Skipped));
    assert_eq!(outcome("publish"), Some(StepOutcome::Succeeded));
    insta::assert_snapshot!(trace(&events));
}

#[tokio::test(start_paused = true)]
async fn a_node_that_recovers_within_its_retries_is_not_skipped() {
    let (result, events, script) = run_announce(Script::default().failing("email", 2)).await;
    let sent = result.expect("succeeds");
    assert_eq!(sent.newsletter.as_deref(), Some("email: Hello"));
    assert_eq!(script.calls("email"), 3);
    assert_eq!(script.calls("send_email"), 1);
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.kind, EventKind::StepSkipped { .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_without_a_failure_policy_still_fails_the_run() {
    let (result, events, _) = run_announce(Script::default().failing("twitter", 1)).await;
    let error = result.expect_err("twitter has no retries and no failure policy");
    assert!(
        matches!(
            error,
            RunError::Step {
                node: "tweet",
                step: "twitter",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(matches!(
        events.last().map(|e| &e.kind),
        Some(EventKind::RunFailed { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// Fallbacks

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Meta {
    tags: Vec<String>,
}

#[step]
fn tag(ctx: &Script, text: &String) -> Result<Meta, StepError> {
    ctx.call("tag")?;
    Ok(Meta {
        tags: text.split_whitespace().map(|w| format!("#{w}")).collect(),
    })
}

#[step(retries = 3)]
async fn fetch(ctx: &Script, url: &String) -> Result<String, StepError> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    ctx.call("fetch")?;
    Ok(format!("<html>{url}</html>"))
}

/// The fallback step: its own policy (one retry, 500 ms exactly).
#[step(retries = 1, backoff = "500ms..1s", jitter = "none")]
async fn cached_copy(ctx: &Script, url: &String) -> Result<String, StepError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    ctx.call("cached_copy")?;
    Ok(format!("<cached>{url}</cached>"))
}

#[step]
fn combine(page: &String, meta: &Meta) -> String {
    format!("{page} {}", meta.tags.join(" "))
}

workflow! {
    /// Two fallbacks: a value for the tags, a step for the page.
    Page(ctx: Script, url: String) -> String {
        #[node(fallback = Meta { tags: vec!["#untagged".to_owned()] })]
        let meta = tag(url);
        #[node(fallback_step = cached_copy(url))]
        let page = fetch(url);
        combine(page, meta)
    }
}

async fn run_page(script: Script) -> (Result<String, RunError>, Vec<Event>, Arc<Script>) {
    let script = Arc::new(script);
    let handle = Page::with_context(Arc::clone(&script)).start("rust lang".to_owned());
    let events = handle.events();
    let result = handle.await;
    (result, events.collect().await, script)
}

#[tokio::test(start_paused = true)]
async fn fallbacks_take_over_when_a_node_fails_for_good() {
    let script = Script::default()
        .failing("tag", u32::MAX)
        .permanently_failing("fetch")
        .failing("cached_copy", 1);
    let (result, events, script) = run_page(script).await;
    assert_eq!(
        result.expect("both fallbacks worked"),
        "<cached>rust lang</cached> #untagged"
    );
    // A permanent error is not retried, whatever the step's `retries`.
    assert_eq!(script.calls("fetch"), 1);
    assert_eq!(script.calls("cached_copy"), 2);
    let summary = RunSummary::new(Page::graph(), &events);
    assert_eq!(summary.steps[0].outcome, StepOutcome::Fallback);
    assert_eq!(summary.steps[1].outcome, StepOutcome::Fallback);
    // fetch's one attempt, then the fallback's two: numbered on.
    assert_eq!(summary.steps[1].attempts, 3);
    assert_eq!(summary.steps[1].duration, Duration::from_millis(840));
    insta::assert_snapshot!(trace(&events));
}

#[tokio::test(start_paused = true)]
async fn a_failing_fallback_step_fails_the_run_and_names_itself() {
    let script = Script::default()
        .permanently_failing("fetch")
        .failing("cached_copy", u32::MAX);
    let (result, _, script) = run_page(script).await;
    let error = result.expect_err("the fallback failed too");
    assert!(
        matches!(
            &error,
            RunError::Step {
                node: "page",
                step: "cached_copy",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "node `page` (step `cached_copy`) failed: cached_copy is down (call 2)"
    );
    assert_eq!(script.calls("cached_copy"), 2);
}

#[test]
fn the_graph_carries_each_node_s_policy() {
    let graph = Page::graph();
    let (meta, page) = (&graph.nodes[0], &graph.nodes[1]);
    assert_eq!(meta.on_failure, workflow::OnFailure::FallbackValue);
    assert_eq!(
        page.on_failure,
        workflow::OnFailure::FallbackStep {
            step: "cached_copy",
            policy: <cached_copy as Step>::POLICY,
        }
    );
    let graph = Announce::graph();
    let email = graph.find("email").map(|id| graph.node(id)).expect("email");
    assert_eq!(email.on_failure, workflow::OnFailure::Skip);
    assert_eq!(email.policy.retries, 2);
    assert_eq!(email.policy.jitter, workflow::Jitter::None);
    assert_eq!(email.policy.backoff.min, Duration::from_secs(1));
    // Not overridden: the step's own.
    assert_eq!(email.policy.timeout, None);
    let publish = graph
        .find("publish")
        .map(|id| graph.node(id))
        .expect("publish");
    assert_eq!(publish.optional, &[graph.find("email").expect("email")]);
}

// ---------------------------------------------------------------------------------------
// A timeout given at the call site

#[step]
async fn slow_once(ctx: &Script, x: &u32) -> Result<u32, StepError> {
    let first = ctx.calls("slow_once") == 0;
    ctx.call("slow_once")?;
    let wait = if first { 60 } else { 1 };
    tokio::time::sleep(Duration::from_secs(wait)).await;
    Ok(x + 1)
}

workflow! {
    /// The first attempt hangs; the node's timeout cuts it off and the retry succeeds.
    Hang(ctx: Script, x: u32) -> u32 {
        #[node(timeout = "5s", retries = 1, backoff = "2s..2s", jitter = "none")]
        let y = slow_once(x);
        y
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_timeout_cancels_the_attempt_and_the_retry_runs() {
    let workflow = Hang::new(Script::default());
    let handle = workflow.start(41);
    let events = handle.events();
    assert_eq!(handle.await.expect("the retry succeeds"), 42);
    let events = events.collect().await;
    insta::assert_snapshot!(trace(&events));
}
