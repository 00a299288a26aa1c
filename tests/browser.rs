//! The web page end to end, in headless Chromium: `tests/web/page.mjs` (playwright-core,
//! driving the system's Chromium) starts a run of the reviewed content pipeline from the
//! page, takes a screenshot while it runs, answers the editor's review through the page's
//! form, checks the live graph, a node's panel, the past runs and the API docs, against a
//! real server on loopback.
//!
//! Needs Node.js, `/usr/bin/chromium` (Debian's `chromium`) and `npm ci` in `tests/web`;
//! `.ci/run` installs them. Where one is missing the test says so and passes, unless
//! `WORKFLOW_REQUIRE_BROWSER=1` (as `.ci/run` sets) makes it fail.

#[path = "http/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "../examples/content_pipeline/pipeline.rs"]
#[allow(dead_code)]
mod pipeline;
#[path = "http/support.rs"]
#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What the browser test needs that is missing, if anything.
fn missing(web: &Path) -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "no Chromium at {chromium} (apt-get install chromium)"
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no `node` on the PATH".into());
    }
    if !web.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "no playwright-core in {} (run `npm ci` there)",
            web.display()
        ));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_runs_a_workflow_live_in_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let web = root.join("tests/web");
    if let Some(why) = missing(&web) {
        assert!(
            std::env::var_os("WORKFLOW_REQUIRE_BROWSER").is_none(),
            "the browser test cannot run: {why}"
        );
        eprintln!("skipping the browser test: {why}");
        return;
    }
    let store = support::sqlite("browser");
    // Steps slow enough to see them run (and to take the screenshot mid-run).
    let registry = support::registry(&store, Duration::from_millis(250));
    let client = support::start(workflow::http::serve(registry).token("page-token")).await;
    let shot = root.join("target/browser/page.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();

    let script = web.join("page.mjs");
    let base = format!("http://{}/", client.addr());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(base)
            .arg(&shot)
            .env("ACCESS_TOKEN", "page-token")
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );

    // What the page did is what the store holds: the run it started and answered.
    let runs = store.runs(10).await.unwrap();
    assert!(
        runs.iter().any(|run| run.workflow == "ReviewedPipeline"
            && run.status == workflow::store::RunStatus::Succeeded),
        "no succeeded ReviewedPipeline run in the store"
    );
    let shot = root.join("target/browser/page.png");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot"
    );
    // `UPDATE_SCREENSHOT=1` refreshes the README's screenshot from this run.
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        std::fs::copy(&shot, root.join("docs/page.png")).unwrap();
    }
}
