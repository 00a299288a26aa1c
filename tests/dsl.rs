//! The shapes of steps and workflows the macros accept, run end to end.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use workflow::prelude::*;
use workflow::{Policy, Source};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Words(Vec<String>);

/// Sync, infallible; `&str` borrows the `String` input (deref coercion).
#[step]
fn split(text: &str) -> Words {
    Words(text.split_whitespace().map(str::to_owned).collect())
}

/// Async, fallible with a std error.
#[step]
async fn count(words: &Words) -> Result<usize, std::num::TryFromIntError> {
    tokio::task::yield_now().await;
    Ok(words.0.len())
}

/// Sync, fallible with `StepError`; an owned `Copy` input is copied for the call.
#[step]
fn describe(words: &Words, count: usize) -> Result<String, StepError> {
    let first = words.0.first().ok_or_else(|| StepError::msg("no words"))?;
    Ok(format!("{count} words, starting with {first}"))
}

workflow! {
    /// Describes a text.
    Describe(text: String) -> String {
        let words = split(text);
        let n = count(words);
        describe(words, n)
    }
}

#[tokio::test]
async fn sync_and_async_steps_fallible_or_not() {
    let out = Describe::new().run("the quick brown fox".into()).await;
    assert_eq!(out.expect("succeeds"), "4 words, starting with the");
    let error = Describe::new()
        .run("   ".into())
        .await
        .expect_err("no words");
    assert_eq!(error.to_string(), "step `describe` failed: no words");
}

/// Writes a two-step workflow named `$name` whose second step is `$then`: a
/// `macro_rules!` that gives `workflow!` names from its own caller.
macro_rules! split_then {
    ($name:ident, $then:ident) => {
        workflow! {
            /// Splits a text, then applies a step given by the macro's caller.
            $name(text: String) -> usize {
                let words = split(text);
                $then(words)
            }
        }
    };
}

split_then!(CountWords, count);

#[tokio::test]
async fn a_workflow_written_by_a_macro_rules_with_names_from_its_caller() {
    let out = CountWords::new().run("one two three".into()).await;
    assert_eq!(out.expect("succeeds"), 3);
}

#[step]
fn pair(a: u32, b: &str) -> String {
    format!("{b}{a}")
}

workflow! {
    /// Two inputs: the input type is a tuple, in declaration order.
    Pair(a: u32, b: String) -> String {
        pair(a, b)
    }
}

#[step]
fn constant() -> u32 {
    42
}

workflow! {
    /// No input at all.
    Constant() -> u32 {
        constant()
    }
}

#[tokio::test]
async fn inputs_are_a_tuple_or_unit() {
    assert_eq!(Pair::new().run((7, "x".into())).await.expect("ok"), "x7");
    assert_eq!(Constant::new().run(()).await.expect("ok"), 42);
    assert_eq!(Constant::default().run(()).await.expect("ok"), 42);
}

static EFFECTS: AtomicUsize = AtomicUsize::new(0);

#[step]
fn effect(x: u32) {
    EFFECTS.fetch_add(usize::try_from(x).expect("small"), Ordering::SeqCst);
}

mod steps {
    use workflow::prelude::*;

    /// A step in another module, used by path.
    #[step(name = "double it")]
    pub(crate) fn double(x: u32) -> u32 {
        x * 2
    }
}

workflow! {
    /// A step run for its effect, a path step, and a binding as the output.
    Effects(x: u32) -> u32 {
        let doubled = steps::double(x);
        let _ = effect(doubled);
        let _ = effect(x);
        doubled
    }
}

#[tokio::test]
async fn discarded_nodes_still_run_and_bindings_can_be_the_output() {
    let before = EFFECTS.load(Ordering::SeqCst);
    assert_eq!(Effects::new().run(5).await.expect("ok"), 10);
    assert_eq!(EFFECTS.load(Ordering::SeqCst) - before, 15);
    let graph = Effects::graph();
    let names: Vec<_> = graph.nodes.iter().map(|n| (n.name, n.step)).collect();
    assert_eq!(
        names,
        [
            ("doubled", "double it"),
            ("effect", "effect"),
            ("effect_2", "effect")
        ]
    );
    assert_eq!(graph.output, Source::Node(workflow::NodeId(0)));
}

#[step(retries = 3, backoff = "1s..1m", timeout = "1.5s")]
fn with_policy(x: u32) -> u32 {
    x
}

#[test]
fn policies_reach_the_graph() {
    let policy: Policy = <with_policy as Step>::POLICY;
    assert_eq!(policy.retries, 3);
    assert_eq!(policy.backoff.min, std::time::Duration::from_secs(1));
    assert_eq!(policy.backoff.max, std::time::Duration::from_secs(60));
    assert_eq!(policy.timeout, Some(std::time::Duration::from_millis(1500)));
    assert_eq!(<with_policy as Step>::OUTPUT_TYPE, "u32");
    assert_eq!(<steps::double as Step>::NAME, "double it");
    assert_eq!(with_policy(4), 4, "the function stays callable on its own");
}

#[tokio::test]
async fn workflows_can_be_local_to_a_function() {
    #[step]
    fn shout(text: &str) -> String {
        text.to_uppercase()
    }

    workflow! {
        #[workflow(crate = "::workflow")]
        /// A workflow declared inside a function.
        Shout(text: String) -> String {
            shout(text)
        }
    }

    assert_eq!(Shout::new().run("hey".into()).await.expect("ok"), "HEY");
}

#[tokio::test]
async fn a_run_future_is_owned_and_can_be_spawned() {
    let task = tokio::spawn(Describe::new().run("a b".into()));
    assert_eq!(
        task.await.expect("joined").expect("ok"),
        "2 words, starting with a"
    );
}

// ---------------------------------------------------------------------------------------
// Structural hash: what a stored run is checked against before it resumes

mod hashing {
    use workflow::prelude::*;

    #[step]
    pub(crate) fn inc(x: u32) -> u32 {
        x + 1
    }

    #[step]
    pub(crate) fn add(a: u32, b: u32) -> u32 {
        a + b
    }

    pub(crate) mod plain {
        use super::{add, inc};
        use workflow::prelude::*;

        workflow! {
            /// Two increments, added.
            pub(crate) Sum(x: u32) -> u32 {
                let a = inc(x);
                let b = inc(a);
                add(a, b)
            }
        }
    }

    pub(crate) mod tuned {
        use super::{add, inc};
        use workflow::prelude::*;

        workflow! {
            /// The same graph, other policies and another doc comment.
            pub(crate) Sum(x: u32) -> u32 {
                #[node(retries = 3, timeout = "1s")]
                let a = inc(x);
                let b = inc(a);
                add(a, b)
            }
        }
    }

    pub(crate) mod rewired {
        use super::{add, inc};
        use workflow::prelude::*;

        workflow! {
            /// One argument wired differently.
            pub(crate) Sum(x: u32) -> u32 {
                let a = inc(x);
                let b = inc(x);
                add(a, b)
            }
        }
    }
}

#[test]
fn the_structural_hash_ignores_policies_and_docs_and_sees_wiring() {
    let plain = hashing::plain::Sum::graph().structural_hash();
    assert_eq!(plain, hashing::tuned::Sum::graph().structural_hash());
    assert_ne!(plain, hashing::rewired::Sum::graph().structural_hash());
    // The encoding is part of the stored format: a change here strands stored runs.
    insta::assert_snapshot!(plain, @"82164249536b3c85");
}
