//! The HTTP service against a real server on loopback: starting runs, following their
//! events (SSE and WebSocket, with reconnection), answering pauses, cancelling, metrics, the
//! OpenAPI document, and every kind of bad input, which changes nothing in the store.

#[path = "../../examples/content_pipeline/pipeline.rs"]
#[allow(dead_code)]
mod pipeline;

#[path = "../../examples/code_review/analysis.rs"]
#[allow(dead_code)]
mod analysis;
#[path = "../../examples/code_review/review.rs"]
mod review;

mod client;
#[path = "../support/example.rs"]
mod example;
#[path = "../support/pg.rs"]
mod pg;
mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use support::{
    assert_gapless, footprint, kinds, registry, serve, serve_with, sqlite, start, stored_events,
    topic, until_waiting,
};
use workflow::http::Registry;
use workflow::store::{RunStatus, SqliteStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_workflows_with_schemas_and_graphs() {
    let store = sqlite("workflows");
    let client = serve(&store).await;

    let reply = client.get("/workflows").await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    let names: Vec<&str> = body["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ContentPipeline", "ReviewedPipeline"]);
    let reviewed = &body["workflows"][1];
    assert_eq!(reviewed["kind"], "dataflow");
    assert_eq!(reviewed["input_schema"]["title"], "Topic");
    assert_eq!(
        reviewed["input_schema"]["required"],
        json!(["title", "audience"])
    );
    assert_eq!(
        reviewed["input_example"],
        json!({"title": "Compile-time checked workflows in Rust", "audience": "backend engineers"})
    );
    assert_eq!(reviewed["output_schema"]["title"], "Published");

    let graph = client.get("/workflows/ReviewedPipeline/graph").await;
    assert_eq!(graph.status, 200);
    let graph = graph.json();
    assert!(
        graph["mermaid"]
            .as_str()
            .unwrap()
            .starts_with("flowchart TD")
    );
    assert!(
        graph["dot"]
            .as_str()
            .unwrap()
            .starts_with("digraph ReviewedPipeline")
    );
    insta::assert_json_snapshot!(
        "reviewed_graph",
        json!({
            "nodes": graph["nodes"],
            "edges": graph["edges"],
            "start": graph["start"],
        })
    );

    let unknown = client.get("/workflows/Nope/graph").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_code(), "unknown_workflow");
    assert!(
        unknown.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ReviewedPipeline")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_a_run_and_waits_for_its_result() {
    let store = sqlite("wait");
    let client = serve(&store).await;

    let reply = client
        .post(
            "/workflows/ContentPipeline/runs?wait=true",
            topic().to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let run = reply.json();
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["workflow"], "ContentPipeline");
    assert_eq!(run["input"], topic());
    assert!(
        run["output"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://blog.example/")
    );
    let nodes = run["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 8);
    for node in nodes {
        assert_eq!(node["status"], "done", "{node}");
        assert!(!node["output"].is_null(), "{node}");
    }
    // Research failed once, then succeeded: two attempts.
    let research = &nodes[0];
    assert_eq!(research["name"], "research");
    let outcomes: Vec<&str> = research["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retrying", "succeeded"]);

    let id = run["id"].as_str().unwrap();
    let listed = client.get("/runs").await.json();
    assert_eq!(listed["runs"][0]["id"], id);
    assert_eq!(listed["runs"][0]["status"], "succeeded");
    let shown = client.get(&format!("/runs/{id}")).await.json();
    assert_eq!(shown["output"], run["output"]);
    assert_eq!(shown["next_seq"], stored_events(&store, id).await.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_events_live_and_resumes_a_stream_without_gaps_or_repeats() {
    let store = sqlite("sse");
    let client = serve_with(&store, Duration::from_millis(30)).await;

    let reply = client
        .post("/workflows/ContentPipeline/runs", topic().to_string())
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let started = reply.json();
    assert_eq!(started["status"], "running");
    let id = started["id"].as_str().unwrap().to_owned();

    // A client reads a few events while the run goes on, then drops the connection.
    let mut first = client.events(&format!("/runs/{id}/events"), None).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(first.next().await.expect("an event"));
    }
    drop(first);
    // It reconnects with the last id it saw, as browsers do.
    let rest = client
        .events(&format!("/runs/{id}/events"), Some(seen.last().unwrap().id))
        .await
        .collect()
        .await;
    seen.extend(rest);
    assert_gapless(&seen);
    assert_eq!(seen.first().unwrap().name, "run_started");
    assert_eq!(seen.last().unwrap().name, "run_finished");

    // Everything the stream gave is what the store keeps, and a late client replays it all.
    let stored = stored_events(&store, &id).await;
    let data: Vec<Value> = seen.iter().map(|e| e.data.clone()).collect();
    assert_eq!(data, stored);
    let from_start = client
        .events(&format!("/runs/{id}/events?from=0"), None)
        .await
        .collect()
        .await;
    assert_eq!(
        from_start
            .iter()
            .map(|e| e.data.clone())
            .collect::<Vec<_>>(),
        stored
    );
    let tail = client
        .events(&format!("/runs/{id}/events?from=5"), None)
        .await
        .collect()
        .await;
    assert_eq!(tail.first().unwrap().id, 5);
    assert_eq!(tail.len(), stored.len() - 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_events_over_a_websocket() {
    let store = sqlite("ws");
    let client = serve(&store).await;
    let reply = client
        .post("/workflows/ContentPipeline/runs", topic().to_string())
        .await;
    let id = reply.json()["id"].as_str().unwrap().to_owned();

    let url = format!("ws://{}/runs/{id}/ws?from=0", client.addr());
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut events = Vec::new();
    while let Some(message) = tokio::time::timeout(client::PATIENCE, socket.next())
        .await
        .expect("a message in time")
    {
        match message.unwrap() {
            tokio_tungstenite::tungstenite::Message::Text(text) => {
                events.push(serde_json::from_str::<Value>(&text).unwrap());
            }
            tokio_tungstenite::tungstenite::Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = socket.close(None).await;
    assert_eq!(events, stored_events(&store, &id).await);
    assert_eq!(events.last().unwrap()["event"], "run_finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_a_pause_over_http_and_the_stream_goes_on() {
    let store = sqlite("pause");
    let client = serve(&store).await;
    let reply = client
        .post("/workflows/ReviewedPipeline/runs", topic().to_string())
        .await;
    let id = reply.json()["id"].as_str().unwrap().to_owned();

    let mut stream = client.events(&format!("/runs/{id}/events"), None).await;
    let mut seen = until_waiting(&mut stream).await;
    let run = client.get(&format!("/runs/{id}")).await.json();
    assert_eq!(run["status"], "waiting");
    assert_eq!(run["interrupt"]["node"], "review");
    assert_eq!(
        run["interrupt"]["request"]["posts"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{run}"
    );
    let review = run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "review")
        .unwrap();
    assert_eq!(review["status"], "waiting");

    // An answer of the wrong type is refused and changes nothing.
    let before = footprint(&store).await;
    let wrong = client
        .post(&format!("/runs/{id}/resume"), r#""maybe""#)
        .await;
    assert_eq!(wrong.status, 422, "{}", wrong.text);
    assert_eq!(wrong.error_code(), "invalid_input");
    assert!(wrong.text.contains("approve"), "{}", wrong.text);
    assert_eq!(footprint(&store).await, before);
    assert_eq!(
        client.get(&format!("/runs/{id}")).await.json()["status"],
        "waiting"
    );

    let answer = client
        .post(&format!("/runs/{id}/resume"), r#""approve""#)
        .await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    // The same stream carries on with the answer and the rest of the run.
    seen.extend(stream.collect().await);
    assert_gapless(&seen);
    let names = kinds(&seen);
    let waiting = names.iter().position(|n| n == "run_waiting").unwrap();
    assert_eq!(names[waiting + 1..waiting + 3], ["answered", "run_resumed"]);
    assert_eq!(names.last().unwrap(), "run_finished");
    let data: Vec<Value> = seen.iter().map(|e| e.data.clone()).collect();
    assert_eq!(data, stored_events(&store, &id).await);

    let done = client.get(&format!("/runs/{id}")).await.json();
    assert_eq!(done["status"], "succeeded");
    assert!(done["interrupt"].is_null());
    // Answering again: the run does not wait any more.
    let again = client
        .post(&format!("/runs/{id}/resume"), r#""approve""#)
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), "not_waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_waiting_and_running_runs() {
    let store = sqlite("cancel");
    let client = serve_with(&store, Duration::from_millis(200)).await;

    let waiting = client
        .post(
            "/workflows/ReviewedPipeline/runs?wait=true",
            topic().to_string(),
        )
        .await
        .json();
    assert_eq!(waiting["status"], "waiting");
    let id = waiting["id"].as_str().unwrap();
    let cancelled = client.post(&format!("/runs/{id}/cancel"), "").await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    let cancelled = cancelled.json();
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["interrupt"].is_null());
    let events = stored_events(&store, id).await;
    assert_eq!(events.last().unwrap()["event"], "run_cancelled");
    let again = client.post(&format!("/runs/{id}/cancel"), "").await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), "already_ended");

    let running = client
        .post("/workflows/ContentPipeline/runs", topic().to_string())
        .await
        .json();
    let id = running["id"].as_str().unwrap();
    let cancelled = client.post(&format!("/runs/{id}/cancel"), "").await.json();
    assert_eq!(cancelled["status"], "cancelled");
    let stream = client
        .events(&format!("/runs/{id}/events"), None)
        .await
        .collect()
        .await;
    assert_eq!(stream.last().unwrap().name, "run_cancelled");
    assert_gapless(&stream);
}

/// Requests that must be refused, with the status and error code each gets: `finished` is
/// a run that has ended. (Method, path, body, status, code.)
// A table, one case after another.
#[allow(clippy::too_many_lines)]
fn bad_requests(finished: &str) -> Vec<(&'static str, String, String, u16, &'static str)> {
    let unknown_id = "01a23402-0000-7000-8000-000000000000";
    let huge = format!(r#"{{"title": "{}", "audience": "x"}}"#, "a".repeat(10_000));
    vec![
        (
            "POST",
            "/workflows/ContentPipeline/runs".into(),
            r#"{"title": "#.into(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/workflows/ContentPipeline/runs".into(),
            String::new(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/workflows/ContentPipeline/runs".into(),
            r#"{"title": "x"}"#.into(),
            422,
            "invalid_input",
        ),
        (
            "POST",
            "/workflows/ContentPipeline/runs".into(),
            "42".into(),
            422,
            "invalid_input",
        ),
        (
            "POST",
            "/workflows/ContentPipeline/runs".into(),
            huge,
            413,
            "body_too_large",
        ),
        (
            "POST",
            "/workflows/Nope/runs".into(),
            topic().to_string(),
            404,
            "unknown_workflow",
        ),
        (
            "POST",
            "/workflows/ContentPipeline/runs?wait=maybe".into(),
            topic().to_string(),
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("/runs/{unknown_id}"),
            String::new(),
            404,
            "unknown_run",
        ),
        (
            "GET",
            "/runs/not-a-run".into(),
            String::new(),
            404,
            "unknown_run",
        ),
        (
            "GET",
            format!("/runs/{unknown_id}/events"),
            String::new(),
            404,
            "unknown_run",
        ),
        (
            "POST",
            format!("/runs/{unknown_id}/resume"),
            r#""approve""#.into(),
            404,
            "unknown_run",
        ),
        (
            "POST",
            format!("/runs/{unknown_id}/cancel"),
            String::new(),
            404,
            "unknown_run",
        ),
        (
            "POST",
            format!("/runs/{finished}/resume"),
            r#""approve""#.into(),
            409,
            "not_waiting",
        ),
        (
            "POST",
            format!("/runs/{finished}/resume"),
            "{".into(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            format!("/runs/{finished}/cancel"),
            String::new(),
            409,
            "already_ended",
        ),
        (
            "GET",
            "/runs?limit=lots".into(),
            String::new(),
            400,
            "bad_request",
        ),
        (
            "GET",
            "/no/such/route".into(),
            String::new(),
            404,
            "not_found",
        ),
        (
            "DELETE",
            "/runs".into(),
            String::new(),
            405,
            "method_not_allowed",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let store = sqlite("bad");
    let client =
        start(workflow::http::serve(registry(&store, Duration::from_millis(5))).body_limit(4096))
            .await;
    let finished = client
        .post(
            "/workflows/ContentPipeline/runs?wait=true",
            topic().to_string(),
        )
        .await
        .json();
    let finished = finished["id"].as_str().unwrap().to_owned();
    let before = footprint(&store).await;

    let cases = bad_requests(&finished);
    for (method, path, body, status, code) in cases {
        let reply = match method {
            "GET" => client.get(&path).await,
            "POST" => client.post(&path, body).await,
            _ => client.send_method(method, &path).await,
        };
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text);
        assert!(
            reply.content_type.starts_with("application/json"),
            "{method} {path}"
        );
        assert_eq!(reply.error_code(), code, "{method} {path}");
        assert_eq!(
            footprint(&store).await,
            before,
            "{method} {path} changed the store"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_route() {
    let store = sqlite("token");
    let client =
        start(workflow::http::serve(registry(&store, Duration::from_millis(5))).token("s3cret"))
            .await;
    for path in ["/", "/workflows", "/runs", "/metrics", "/openapi.json"] {
        let reply = client.get(path).await;
        assert_eq!(reply.status, 401, "{path}");
        assert_eq!(reply.error_code(), "unauthorized");
        assert_eq!(
            client.clone().with_token("wrong").get(path).await.status,
            401
        );
        assert_eq!(
            client.clone().with_token("s3cret").get(path).await.status,
            200,
            "{path}"
        );
        let query = if path.contains('?') { '&' } else { '?' };
        assert_eq!(
            client
                .get(&format!("{path}{query}access_token=s3cret"))
                .await
                .status,
            200
        );
    }
    let refused = client
        .post("/workflows/ContentPipeline/runs", topic().to_string())
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(footprint(&store).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_runs_steps_retries_and_waiting_runs() {
    let store = sqlite("metrics");
    let client = serve(&store).await;
    for _ in 0..2 {
        let run = client
            .post(
                "/workflows/ContentPipeline/runs?wait=true",
                topic().to_string(),
            )
            .await
            .json();
        assert_eq!(run["status"], "succeeded");
    }
    let waiting = client
        .post(
            "/workflows/ReviewedPipeline/runs?wait=true",
            topic().to_string(),
        )
        .await
        .json();
    assert_eq!(waiting["status"], "waiting");

    let reply = client.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .content_type
            .starts_with("application/openmetrics-text")
    );
    let text = reply.text;
    for line in [
        r#"workflow_runs_started_total{workflow="ContentPipeline"} 2"#,
        r#"workflow_runs_started_total{workflow="ReviewedPipeline"} 1"#,
        r#"workflow_runs_finished_total{workflow="ContentPipeline",status="succeeded"} 2"#,
        // The mock fails research's first call once, in the first run only.
        r#"workflow_step_retries_total{workflow="ContentPipeline",node="research"} 1"#,
        r#"workflow_step_duration_seconds_count{workflow="ContentPipeline",node="publish",outcome="succeeded"} 2"#,
        "workflow_runs_waiting 1",
        "workflow_runs_running 0",
        "# TYPE workflow_step_duration_seconds histogram",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    assert!(text.trim_end().ends_with("# EOF"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_page_the_docs_and_an_openapi_document_of_every_route() {
    let store = sqlite("docs");
    let client = serve(&store).await;
    let page = client.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    let docs = client.get("/docs").await;
    assert_eq!(docs.status, 200);
    assert!(docs.content_type.starts_with("text/html"));

    let openapi = client.get("/openapi.json").await;
    assert_eq!(openapi.status, 200);
    assert!(openapi.content_type.starts_with("application/json"));
    let openapi = openapi.json();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = openapi["paths"].as_object().unwrap();
    for (path, method) in [
        ("/workflows", "get"),
        ("/workflows/{name}/graph", "get"),
        ("/workflows/{name}/runs", "post"),
        ("/runs", "get"),
        ("/runs/{id}", "get"),
        ("/runs/{id}/events", "get"),
        ("/runs/{id}/ws", "get"),
        ("/runs/{id}/resume", "post"),
        ("/runs/{id}/cancel", "post"),
        ("/metrics", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "the OpenAPI document has no {method} {path}"
        );
    }
}

/// Two servers on one store, as two processes would have: a run started through the first
/// is followed through the second, which does not drive it and reads its events from the
/// store; the second answers its pause, takes it up itself, and the stream goes on.
async fn follow_a_run_another_server_drives(first: &Arc<dyn Store>, second: &Arc<dyn Store>) {
    let driver = serve_with(first, Duration::from_millis(20)).await;
    let watcher = serve(second).await;
    let id = driver
        .post("/workflows/ReviewedPipeline/runs", topic().to_string())
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut stream = watcher.events(&format!("/runs/{id}/events"), None).await;
    let mut seen = until_waiting(&mut stream).await;
    let answer = watcher
        .post(&format!("/runs/{id}/resume"), r#""approve""#)
        .await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    seen.extend(stream.collect().await);
    assert_gapless(&seen);
    assert_eq!(seen.last().unwrap().name, "run_finished");
    let data: Vec<Value> = seen.iter().map(|e| e.data.clone()).collect();
    assert_eq!(data, stored_events(first, &id).await);
    let run = driver.get(&format!("/runs/{id}")).await.json();
    assert_eq!(run["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sharing_sqlite_streams_a_run_another_process_drives() {
    let dir = std::env::temp_dir().join(format!("workflow-http-{}-shared", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let first: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.join("runs.db")).unwrap());
    let second: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.join("runs.db")).unwrap());
    follow_a_run_another_server_drives(&first, &second).await;
    assert_eq!(
        first.runs(10).await.unwrap()[0].status,
        RunStatus::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_state_graph_its_routes_and_its_state() {
    let store = sqlite("state-graph");
    let registry =
        Registry::with_shared_store(Arc::clone(&store)).workflow(review::CodeReview::new());
    let client = start(workflow::http::serve(registry)).await;

    let graph = client.get("/workflows/CodeReview/graph").await.json();
    assert_eq!(graph["kind"], "state_graph");
    insta::assert_json_snapshot!(
        "code_review_graph",
        json!({
            "start": graph["start"],
            "edges": graph["edges"],
        })
    );

    let workflows = client.get("/workflows").await.json();
    let example = workflows["workflows"][0]["input_example"].clone();
    assert_eq!(example["path"], "sample.rs");
    let run = client
        .post("/workflows/CodeReview/runs?wait=true", example.to_string())
        .await;
    assert_eq!(run.status, 200, "{}", run.text);
    let run = run.json();
    assert_eq!(run["status"], "succeeded");
    let rounds = run["state"]["rounds"].as_array().unwrap().len();
    assert!(rounds >= 2, "the sample needs a revision: {rounds} rounds");
    // `evaluate` ran once a round: each run of it is an attempt of its own.
    let evaluate = run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "evaluate")
        .unwrap();
    assert_eq!(evaluate["status"], "done");
    assert_eq!(evaluate["attempts"].as_array().unwrap().len(), rounds);
    assert_eq!(run["output"], run["state"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sharing_postgres_streams_a_run_another_process_drives() {
    let Some(schema) =
        pg::PgSchema::new("a_server_sharing_postgres_streams_a_run_another_process_drives")
    else {
        return;
    };
    // Each server with a pool of its own.
    let first: Arc<dyn Store> = Arc::new(schema.store().await);
    let second: Arc<dyn Store> = Arc::new(schema.store().await);
    follow_a_run_another_server_drives(&first, &second).await;
    drop((first, second));
    schema.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_submits_runs_to_a_worker_process_and_streams_its_events() {
    let Some(schema) = pg::PgSchema::new("a_server_submits_runs_to_a_worker_process") else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(schema.store().await);
    let server = support::start(
        workflow::http::serve(support::registry(&store, Duration::from_millis(5)))
            .submit_to_workers(),
    )
    .await;
    // The steps run in another process: the example's `worker`.
    let worker = std::process::Command::new(example::example())
        .args(["--db", &schema.url_in_schema(), "worker"])
        .args(["--latency", "30", "--poll-ms", "20"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the worker starts");
    let started = server
        .post("/workflows/ContentPipeline/runs", topic().to_string())
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.json()["id"].as_str().unwrap().to_owned();
    let events = server
        .events(&format!("/runs/{id}/events"), None)
        .await
        .collect()
        .await;
    assert_gapless(&events);
    let names = kinds(&events);
    assert_eq!(names.first().map(String::as_str), Some("run_started"));
    assert_eq!(names.last().map(String::as_str), Some("run_finished"));
    assert_eq!(
        names.iter().filter(|n| *n == "step_succeeded").count(),
        8,
        "{names:?}"
    );
    let data: Vec<Value> = events.iter().map(|e| e.data.clone()).collect();
    assert_eq!(data, stored_events(&store, &id).await);
    // `?wait=true` answers once the worker has finished the run.
    let waited = server
        .post(
            "/workflows/ContentPipeline/runs?wait=true",
            topic().to_string(),
        )
        .await;
    assert_eq!(waited.status, 200, "{}", waited.text);
    assert_eq!(waited.json()["status"], "succeeded");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let _ = worker.wait_with_output();
    // A store without a work queue cannot take submitted runs.
    let sqlite = sqlite("submit-without-queue");
    let server = support::start(
        workflow::http::serve(support::registry(&sqlite, Duration::ZERO)).submit_to_workers(),
    )
    .await;
    let refused = server
        .post("/workflows/ContentPipeline/runs", topic().to_string())
        .await;
    assert_eq!(refused.status, 501, "{}", refused.text);
    assert_eq!(refused.error_code(), "unsupported");
    assert!(sqlite.runs(10).await.unwrap().is_empty(), "nothing stored");
    drop(store);
    schema.remove().await;
}
