//! The content pipeline: one topic in, a blog post and its social posts out.
//!
//! ```text
//! research -> blog_post -> { linkedin, twitter, email } ; twitter -> meta
//! { linkedin, twitter, email, meta } -> quality_check -> publish
//! ```
//!
//! The newsletter is optional: if `email` fails for good, it is skipped and the posts go
//! out without it (`quality_check` reads it as `email.ok()`).
//!
//! Every LLM call goes to a deterministic mock, so the example runs anywhere, with no key,
//! and the same topic always gives the same posts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use workflow::mock::{MockLlm, MockLlmError};
use workflow::prelude::*;

/// The shared context of every run: the LLM client.
pub(crate) struct Ctx {
    /// The (mock) LLM every writing step calls.
    pub(crate) llm: MockLlm,
    /// Where each step notes that it runs, if anywhere (tests count executions with it).
    pub(crate) journal: Option<std::sync::Mutex<std::fs::File>>,
}

impl Ctx {
    /// A context around `llm`, keeping no journal.
    pub(crate) fn new(llm: MockLlm) -> Self {
        Self { llm, journal: None }
    }

    /// Appends every step execution to the file at `path`, one line each: the node's name,
    /// then its idempotency key (`<run>/<node>`).
    pub(crate) fn with_journal(mut self, path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        self.journal = Some(std::sync::Mutex::new(file));
        Ok(self)
    }

    /// Notes that `node` runs (a line written at once, so a killed process loses none).
    fn ran(&self, node: &str) {
        if let Some(journal) = &self.journal {
            use std::io::Write as _;
            let mut file = journal
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // The node, and the run it belongs to (`<run>/<node>`).
            let key = workflow::idempotency_key().unwrap_or_default();
            let _ = file.write_all(format!("{node} {key}\n").as_bytes());
        }
    }
}

/// What to write about.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
#[schemars(example = Topic::example())]
pub(crate) struct Topic {
    /// The subject.
    pub(crate) title: String,
    /// Who will read it.
    pub(crate) audience: String,
}

impl Topic {
    /// A topic to start from (the one the command line uses unless told otherwise).
    pub(crate) fn example() -> Self {
        Self {
            title: "Compile-time checked workflows in Rust".into(),
            audience: "backend engineers".into(),
        }
    }
}

/// Notes gathered on the topic.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub(crate) struct Research {
    /// The subject, carried along.
    pub(crate) title: String,
    /// One note per angle.
    pub(crate) notes: Vec<String>,
}

/// A blog post.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub(crate) struct Post {
    /// Its headline.
    pub(crate) title: String,
    /// Its text.
    pub(crate) body: String,
}

/// A post for one social network.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub(crate) struct Social {
    /// The network.
    pub(crate) network: String,
    /// The text.
    pub(crate) text: String,
}

/// A newsletter email.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub(crate) struct Email {
    /// Its subject line.
    pub(crate) subject: String,
    /// Its body.
    pub(crate) body: String,
}

/// Metadata for the tweet.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub(crate) struct Meta {
    /// Hashtags.
    pub(crate) hashtags: Vec<String>,
    /// A one-line summary.
    pub(crate) summary: String,
}

/// Everything that passed the quality check.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub(crate) struct Checked {
    /// The posts, in the order LinkedIn, Twitter, email.
    pub(crate) posts: Vec<Social>,
    /// The newsletter, unless its step failed and was skipped.
    pub(crate) email: Option<Email>,
    /// The tweet's metadata.
    pub(crate) meta: Meta,
    /// Notes from the checker.
    pub(crate) warnings: Vec<String>,
}

/// What was published.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub(crate) struct Published {
    /// Where the blog post lives.
    pub(crate) url: String,
    /// The posts that went out.
    pub(crate) posts: Vec<Social>,
    /// The newsletter's subject, if there was a newsletter.
    pub(crate) email_subject: Option<String>,
    /// The tweet's hashtags.
    pub(crate) hashtags: Vec<String>,
    /// The checker's notes.
    pub(crate) warnings: Vec<String>,
}

/// A quality check that failed.
#[derive(Debug)]
pub(crate) struct QualityError(pub String);

impl std::fmt::Display for QualityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "quality check failed: {}", self.0)
    }
}

impl std::error::Error for QualityError {}

/// Gathers notes on the topic.
#[step(retries = 2, backoff = "50ms..1s", timeout = "30s")]
pub(crate) async fn research(ctx: &Ctx, topic: &Topic) -> Result<Research, MockLlmError> {
    ctx.ran("research");
    let mut notes = Vec::new();
    for angle in ["why it matters", "how it works", "what to try first"] {
        let prompt = format!(
            "[research] {angle}: {} (for {})",
            topic.title, topic.audience
        );
        notes.push(ctx.llm.complete(&prompt).await?);
    }
    Ok(Research {
        title: topic.title.clone(),
        notes,
    })
}

/// Writes the blog post from the notes.
#[step(retries = 2, backoff = "50ms..1s")]
pub(crate) async fn blog_post(ctx: &Ctx, research: &Research) -> Result<Post, MockLlmError> {
    ctx.ran("post");
    let prompt = format!(
        "[blog_post] Write a post titled {}\n{}",
        research.title,
        research.notes.join("\n")
    );
    let body = ctx.llm.complete(&prompt).await?;
    Ok(Post {
        title: research.title.clone(),
        body,
    })
}

/// Writes the LinkedIn post.
#[step(retries = 2, backoff = "50ms..1s")]
pub(crate) async fn linkedin(ctx: &Ctx, post: &Post) -> Result<Social, MockLlmError> {
    ctx.ran("linkedin");
    let prompt = format!("[linkedin] Announce: {}\n{}", post.title, post.body);
    Ok(Social {
        network: "linkedin".into(),
        text: ctx.llm.complete(&prompt).await?,
    })
}

/// Writes the tweet.
#[step(retries = 2, backoff = "50ms..1s")]
pub(crate) async fn twitter(ctx: &Ctx, post: &Post) -> Result<Social, MockLlmError> {
    ctx.ran("tweet");
    let prompt = format!("[twitter] Tweet about: {}\n{}", post.title, post.body);
    let text: String = ctx.llm.complete(&prompt).await?.chars().take(280).collect();
    Ok(Social {
        network: "twitter".into(),
        text,
    })
}

/// Writes the newsletter.
#[step(retries = 2, backoff = "50ms..1s")]
pub(crate) async fn email(ctx: &Ctx, post: &Post) -> Result<Email, MockLlmError> {
    ctx.ran("email");
    let prompt = format!("[email] Newsletter for: {}\n{}", post.title, post.body);
    Ok(Email {
        subject: format!("New post: {}", post.title),
        body: ctx.llm.complete(&prompt).await?,
    })
}

/// Tags and summarises the tweet.
#[step(retries = 2, backoff = "50ms..1s")]
pub(crate) async fn meta(ctx: &Ctx, tweet: &Social) -> Result<Meta, MockLlmError> {
    ctx.ran("meta");
    let summary = ctx
        .llm
        .complete(&format!("[meta] Summarise in one line\n{}", tweet.text))
        .await?;
    let mut hashtags: Vec<String> = tweet
        .text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| word.len() > 6)
        .map(|word| format!("#{}", word.to_lowercase()))
        .collect();
    hashtags.sort();
    hashtags.dedup();
    hashtags.truncate(3);
    Ok(Meta { hashtags, summary })
}

/// Checks every piece before anything goes out: a plain function, no LLM.
#[step]
pub(crate) fn quality_check(
    ctx: &Ctx,
    linkedin: &Social,
    tweet: &Social,
    email: Option<&Email>,
    meta: &Meta,
) -> Result<Checked, QualityError> {
    ctx.ran("checked");
    if tweet.text.chars().count() > 280 {
        return Err(QualityError("the tweet is over 280 characters".into()));
    }
    let mut warnings = Vec::new();
    match email {
        Some(email) if email.subject.trim().is_empty() => {
            return Err(QualityError("the email has no subject".into()));
        }
        Some(_) => {}
        None => warnings.push("no newsletter: the email step failed and was skipped".to_owned()),
    }
    if meta.hashtags.is_empty() {
        warnings.push("the tweet has no hashtags".to_owned());
    }
    if linkedin.text.len() < 40 {
        warnings.push("the LinkedIn post is short".to_owned());
    }
    Ok(Checked {
        posts: vec![linkedin.clone(), tweet.clone()],
        email: email.cloned(),
        meta: meta.clone(),
        warnings,
    })
}

/// Publishes everything.
#[step(retries = 2, backoff = "50ms..1s")]
pub(crate) async fn publish(ctx: &Ctx, checked: &Checked) -> Result<Published, MockLlmError> {
    ctx.ran("publish");
    // The newsletter's subject names the post; without a newsletter, the first post does.
    let about = checked
        .email
        .as_ref()
        .map_or_else(|| checked.posts[0].text.as_str(), |email| &email.subject);
    let slug = ctx
        .llm
        .complete(&format!("[publish] Slug for: {about}"))
        .await?;
    let slug: String = slug
        .split(" | ")
        .nth(1)
        .unwrap_or("post")
        .split_whitespace()
        .take(4)
        .collect::<Vec<_>>()
        .join("-");
    Ok(Published {
        url: format!("https://blog.example/{}", slug.trim_end_matches('.')),
        posts: checked.posts.clone(),
        email_subject: checked.email.as_ref().map(|email| email.subject.clone()),
        hashtags: checked.meta.hashtags.clone(),
        warnings: checked.warnings.clone(),
    })
}

workflow! {
    /// One topic in, a blog post and its social posts out.
    pub(crate) ContentPipeline(ctx: Ctx, topic: Topic) -> Published {
        let research = research(topic);
        let post = blog_post(research);
        let linkedin = linkedin(post);
        let tweet = twitter(post);
        #[node(on_failure = skip)]
        let email = email(post);
        let meta = meta(tweet);
        let checked = quality_check(linkedin, tweet, email.ok(), meta);
        publish(checked)
    }
}

/// What the editor is asked: the posts about to go out.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub(crate) struct ReviewRequest {
    /// The posts.
    pub(crate) posts: Vec<Social>,
    /// The checker's notes.
    pub(crate) warnings: Vec<String>,
}

/// The editor's answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Review {
    /// Publish as it is.
    Approve,
    /// Do not publish.
    Reject {
        /// Why.
        reason: String,
    },
}

/// Asks an editor to approve the checked posts: the run waits, stored, until the answer.
#[step]
pub(crate) fn editor_review(checked: &Checked) -> Pause<ReviewRequest, Review> {
    Pause::new(ReviewRequest {
        posts: checked.posts.clone(),
        warnings: checked.warnings.clone(),
    })
}

/// An editor rejected the posts.
#[derive(Debug)]
pub(crate) struct Rejected(pub String);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the editor rejected the posts: {}", self.0)
    }
}

impl std::error::Error for Rejected {}

/// Publishes what the editor approved.
#[step]
pub(crate) async fn publish_reviewed(
    ctx: &Ctx,
    checked: &Checked,
    review: &Review,
) -> Result<Published, StepError> {
    match review {
        Review::Approve => Ok(publish(ctx, checked).await?),
        Review::Reject { reason } => Err(StepError::from(Rejected(reason.clone())).permanent()),
    }
}

workflow! {
    /// The content pipeline with an editor's approval before anything goes out.
    pub(crate) ReviewedPipeline(ctx: Ctx, topic: Topic) -> Published {
        let research = research(topic);
        let post = blog_post(research);
        let linkedin = linkedin(post);
        let tweet = twitter(post);
        #[node(on_failure = skip)]
        let email = email(post);
        let meta = meta(tweet);
        let checked = quality_check(linkedin, tweet, email.ok(), meta);
        let review = editor_review(checked);
        publish_reviewed(checked, review)
    }
}
