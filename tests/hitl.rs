//! Human in the loop: a pause node stops a durable run until an answer arrives; the answer
//! is typed, and nothing before the pause runs again. Both workflow shapes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use workflow::prelude::*;
use workflow::store::{RunStatus, SqliteStore};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Decision {
    Approve,
    Edit(String),
}

#[derive(Default)]
pub struct Counters {
    drafts: AtomicU32,
    publishes: AtomicU32,
}

#[step]
#[allow(clippy::ptr_arg)]
fn draft(ctx: &Counters, topic: &String) -> String {
    ctx.drafts.fetch_add(1, Ordering::SeqCst);
    format!("A post about {topic}")
}

/// Asks an editor.
#[step]
#[allow(clippy::ptr_arg)]
fn approval(post: &String) -> Pause<String, Decision> {
    Pause::new(format!("Publish? {post}"))
}

#[step]
#[allow(clippy::ptr_arg)]
fn publish(ctx: &Counters, post: &String, decision: &Decision) -> String {
    ctx.publishes.fetch_add(1, Ordering::SeqCst);
    match decision {
        Decision::Approve => format!("published: {post}"),
        Decision::Edit(text) => format!("published: {text}"),
    }
}

workflow! {
    /// Drafts, waits for an editor, publishes.
    pub Blog(ctx: Counters, topic: String) -> String {
        let post = draft(topic);
        let decision = approval(post);
        publish(post, decision)
    }
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("workflow-hitl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("runs.db")
}

#[tokio::test]
async fn a_dataflow_run_waits_for_a_typed_answer_across_a_reopened_store() {
    let path = temp_db("dataflow");
    let counters = Arc::new(Counters::default());
    let durable = Durable::new(
        Blog::with_context(Arc::clone(&counters)),
        SqliteStore::open(&path).unwrap(),
    );
    let handle = durable.start("rust".to_owned()).await.unwrap();
    let id = handle.id();
    let events = handle.events();
    match handle.await {
        Err(RunError::Waiting { node, request }) => {
            assert_eq!(node, "decision");
            assert_eq!(request, serde_json::json!("Publish? A post about rust"));
        }
        other => panic!("expected the run to wait, got {other:?}"),
    }
    let last = events.collect().await.pop().unwrap();
    assert!(
        matches!(last.kind, EventKind::RunWaiting { .. }),
        "{last:?}"
    );
    let store = durable.store();
    assert_eq!(store.run(id).await.unwrap().status, RunStatus::Waiting);
    let interrupt = store.interrupt(id).await.unwrap().unwrap();
    assert_eq!(interrupt.node, "decision");
    drop(durable);

    // A new program (same store file): a wrong answer is refused and changes nothing.
    let durable = Durable::new(
        Blog::with_context(Arc::clone(&counters)),
        SqliteStore::open(&path).unwrap(),
    );
    let before = durable.store().events(id, 0).await.unwrap().len();
    let error = durable
        .answer_json(id, serde_json::json!({"Maybe": 1}))
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with(
            "the answer to `decision` (a `Decision`) has the wrong type: not a `hitl::Decision`: unknown variant `Maybe`"
        ),
        "{error}"
    );
    assert_eq!(
        durable.store().run(id).await.unwrap().status,
        RunStatus::Waiting
    );
    assert_eq!(durable.store().events(id, 0).await.unwrap().len(), before);

    // Resuming without an answer is refused too.
    let error = durable.resume(id).await.unwrap_err();
    assert!(error.to_string().contains("answer it to go on"), "{error}");

    // The typed answer: the compiler checks it is a `Decision`.
    let output = durable
        .answer::<approval>(id, Decision::Edit("Rust, edited".to_owned()))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(output, "published: Rust, edited");
    assert_eq!(
        counters.drafts.load(Ordering::SeqCst),
        1,
        "nothing before the pause re-ran"
    );
    assert_eq!(counters.publishes.load(Ordering::SeqCst), 1);
    let store = durable.store();
    assert_eq!(store.run(id).await.unwrap().status, RunStatus::Succeeded);
    assert!(store.interrupt(id).await.unwrap().is_none());
    let events = store.events(id, 0).await.unwrap();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, i as u64);
    }
    let answered = events
        .iter()
        .position(|e| matches!(&e.kind, EventKind::Answered { node } if node == "decision"))
        .expect("an answered event");
    assert!(matches!(
        events[answered + 1].kind,
        EventKind::RunResumed { restored: 2, .. }
    ));

    // A finished run takes no answer.
    let error = durable
        .answer_json(id, serde_json::json!("Approve"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("run {id} cannot resume: it does not wait for an answer (it is succeeded)")
    );
}

// A state graph: the answer goes into the state through `Answer`, the route matches on it.

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Post {
    pub text: String,
    pub rounds: u32,
}

impl workflow::Answer<Post> for Decision {
    fn apply(&self, post: &mut Post) {
        if let Decision::Edit(text) = self {
            post.text.clone_from(text);
        }
    }
}

static WRITES: AtomicU32 = AtomicU32::new(0);

#[step]
fn write(post: &mut Post) {
    WRITES.fetch_add(1, Ordering::SeqCst);
    post.rounds += 1;
    post.text = format!("draft {}", post.rounds);
}

#[step]
fn review(post: &mut Post) -> Pause<String, Decision> {
    Pause::new(post.text.clone())
}

workflow! {
    /// Writes until the editor approves; an edit replaces the text and asks again.
    pub Editing(post: &mut Post) {
        write -> review;
        review => match {
            Decision::Approve => END,
            Decision::Edit(_) => review,
        } max 5 => END;
    }
}

#[tokio::test]
async fn a_state_graph_pauses_and_resumes_with_its_answer_in_the_state() {
    let durable = Durable::new(Editing::new(), SqliteStore::open(temp_db("state")).unwrap());
    let handle = durable.start(Post::default()).await.unwrap();
    let id = handle.id();
    let waiting = handle.await.unwrap_err();
    assert!(
        matches!(&waiting, RunError::Waiting { node: "review", request } if request == "draft 1"),
        "{waiting:?}"
    );
    // An edit: the state takes the new text, the route goes back to `review`, which asks
    // again about the edited text.
    let again = durable
        .answer::<review>(id, Decision::Edit("edited".to_owned()))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(
        matches!(&again, RunError::Waiting { node: "review", request } if request == "edited"),
        "{again:?}"
    );
    let saved = durable.store().state(id).await.unwrap().unwrap();
    assert_eq!(saved.next.as_deref(), Some("review"));
    assert_eq!(saved.rounds[1], 1, "the route's loop counter is stored");

    let post = durable
        .answer_json(id, serde_json::json!("Approve"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        post,
        Post {
            text: "edited".to_owned(),
            rounds: 1
        }
    );
    assert_eq!(WRITES.load(Ordering::SeqCst), 1, "`write` ran once");
    assert_eq!(
        durable.store().run(id).await.unwrap().status,
        RunStatus::Succeeded
    );
}

#[tokio::test]
async fn a_pause_in_a_run_without_a_store_ends_it_waiting() {
    let error = Blog::new(Counters::default())
        .run("rust".to_owned())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RunError::Waiting {
                node: "decision",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the run waits for an answer to its pause `decision`: a durable run stores the request and goes on with `Durable::answer`"
    );
}
