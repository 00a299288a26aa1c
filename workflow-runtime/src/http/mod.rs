//! An HTTP service for a program's workflows (feature `http`): start runs, follow their
//! events live, answer their pauses, and watch them in a browser.
//!
//! Register the workflows in a [`Registry`] (they share its store), then either serve it on
//! an address with [`serve`]`(registry).bind(addr)` or nest [`Server::router`] in an axum
//! app of your own:
//!
//! | route | what it does |
//! | --- | --- |
//! | `GET /` | a web page: start runs, watch their graph live, answer pauses, browse runs |
//! | `GET /workflows` | the workflows, with their input and output JSON schemas and graphs |
//! | `GET /workflows/{name}/graph` | a graph: nodes and edges as JSON, Mermaid and DOT |
//! | `POST /workflows/{name}/runs` | starts a run with a JSON input (`?wait=true` waits for it) |
//! | `GET /runs`, `GET /runs/{id}` | the runs; one run's status, nodes, outputs and pause |
//! | `GET /runs/{id}/events` | its events as Server-Sent Events (`Last-Event-ID` resumes) |
//! | `GET /runs/{id}/ws` | the same over a WebSocket |
//! | `POST /runs/{id}/resume` | answers the run's pause with a JSON value |
//! | `POST /runs/{id}/cancel` | cancels it |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /openapi.json`, `GET /docs` | the OpenAPI document, and interactive docs |
//!
//! Errors are JSON, `{"error": {"status", "code", "message"}}`, with the status that fits:
//! 400 for malformed JSON, 404 for an unknown workflow or run, 409 for answering a run that
//! does not wait, 413 for a body over the limit, 422 for an input or an answer of the wrong
//! type. A request that fails changes nothing in the store.
//!
//! The event routes replay the run's stored events from a sequence number (the SSE
//! `Last-Event-ID` header plus one, or `?from=N`), then stream the live ones, so a client that
//! reconnects misses nothing and sees nothing twice. The stream ends after the run's last
//! event; a pause keeps it open, and the answer's events follow.
//!
//! # Examples
//!
//! ```no_run
//! use workflow::http::Registry;
//! use workflow::prelude::*;
//! use workflow::store::SqliteStore;
//!
//! #[step]
//! fn double(x: &u32) -> u32 {
//!     x * 2
//! }
//!
//! workflow! {
//!     /// Doubles a number.
//!     pub Double(x: u32) -> u32 {
//!         double(x)
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new(SqliteStore::open("runs.db")?).workflow(Double::new());
//! // `curl -X POST localhost:8080/workflows/Double/runs -d 21`
//! workflow::http::serve(registry).bind("127.0.0.1:8080").await?.await?;
//! # Ok(())
//! # }
//! ```

mod error;
mod follow;
mod metrics;
mod views;

use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use self::error::{ApiError, parse_run_id};
use self::follow::{Follower, LiveRuns};
use self::metrics::Metrics;
use self::views::{GraphView, RunParts, RunSummaryView, RunView};
use crate::durable::{Durable, DynDurable, JsonRun};
use crate::events::{Event, EventKind};
use crate::graph::Graph;
use crate::private::Persist;
use crate::run::RunId;
use crate::store::{RunStatus, Store};

pub use schemars::JsonSchema;

/// The address [`Server::bind`] is usually given: loopback only, port 8080.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// The largest request body [`serve`] accepts unless told otherwise: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// The workflows a [`Server`] serves, and the store their runs are kept in.
///
/// Every workflow of a registry keeps its runs in the registry's store, so that the server
/// can list, show and resume any of them.
pub struct Registry {
    store: Arc<dyn Store>,
    workflows: Vec<Entry>,
}

struct Entry {
    durable: Arc<dyn DynDurable>,
    input_schema: Value,
    output_schema: Value,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field(
                "workflows",
                &self
                    .workflows
                    .iter()
                    .map(|e| e.durable.graph().name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn schema_of<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Bool(true))
}

impl Registry {
    /// An empty registry whose workflows keep their runs in `store`.
    pub fn new(store: impl Store) -> Self {
        Self::with_shared_store(Arc::new(store))
    }

    /// An empty registry keeping runs in a store shared with other parts of the program.
    pub fn with_shared_store(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            workflows: Vec::new(),
        }
    }

    /// The store the runs are kept in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Adds a workflow (its context and options); its runs are kept in the registry's
    /// store. Its input and output types describe themselves as JSON schemas
    /// (`#[derive(JsonSchema)]`), which `GET /workflows` shows; an `examples` entry in the
    /// input's schema (`#[schemars(example = ...)]`) fills the page's input box.
    #[must_use]
    pub fn workflow<W>(self, workflow: W) -> Self
    where
        W: Persist<()>,
        W::Input: JsonSchema,
        W::Output: JsonSchema,
    {
        let durable = Durable::with_shared_store(workflow, Arc::clone(&self.store));
        self.durable(durable)
    }

    /// Adds a durable workflow (for one that keeps its history, say).
    ///
    /// # Panics
    ///
    /// When `durable` keeps its runs in another store than the registry's.
    #[must_use]
    pub fn durable<W>(self, durable: Durable<W>) -> Self
    where
        W: Persist<()>,
        W::Input: JsonSchema,
        W::Output: JsonSchema,
    {
        self.add(
            Arc::new(durable),
            schema_of::<W::Input>(),
            schema_of::<W::Output>(),
        )
    }

    /// Adds a workflow whose input and output types have no JSON schema: `GET /workflows`
    /// shows the schema that accepts anything.
    ///
    /// # Panics
    ///
    /// When it keeps its runs in another store than the registry's.
    #[must_use]
    pub fn dyn_workflow(self, durable: Arc<dyn DynDurable>) -> Self {
        self.add(durable, Value::Bool(true), Value::Bool(true))
    }

    fn add(
        mut self,
        durable: Arc<dyn DynDurable>,
        input_schema: Value,
        output_schema: Value,
    ) -> Self {
        assert!(
            Arc::ptr_eq(durable.store(), &self.store),
            "the workflow `{}` keeps its runs in another store than the registry's: make it \
             with `Durable::with_shared_store(workflow, Arc::clone(registry.store()))`",
            durable.graph().name
        );
        self.workflows.push(Entry {
            durable,
            input_schema,
            output_schema,
        });
        self
    }

    fn find(&self, name: &str) -> Result<&Entry, ApiError> {
        self.workflows
            .iter()
            .find(|entry| entry.durable.graph().name == name)
            .ok_or_else(|| ApiError::unknown_workflow(name, &self.names()))
    }

    fn names(&self) -> Vec<&'static str> {
        self.workflows
            .iter()
            .map(|e| e.durable.graph().name)
            .collect()
    }

    fn graph(&self, name: &str) -> Option<&'static Graph> {
        self.find(name).ok().map(|entry| entry.durable.graph())
    }
}

/// Makes a [`Server`] for the workflows of `registry`.
pub fn serve(registry: Registry) -> Server {
    Server {
        registry,
        token: None,
        body_limit: DEFAULT_BODY_LIMIT,
        workers: false,
    }
}

/// The HTTP service of a [`Registry`]: configure it, then [`bind`](Server::bind) it or
/// take its [`router`](Server::router).
#[derive(Debug)]
pub struct Server {
    registry: Registry,
    token: Option<String>,
    body_limit: usize,
    workers: bool,
}

impl Server {
    /// Guards every route with a bearer token: requests need `Authorization: Bearer
    /// <token>`, or `?access_token=<token>` in the URL (for browsers' `EventSource` and
    /// `WebSocket`, which cannot set headers). Without it, anyone who can reach the address
    /// can start runs: keep the default loopback address.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The largest request body accepted, in bytes ([`DEFAULT_BODY_LIMIT`] unless told);
    /// a larger one is answered 413.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Submits the runs it is asked to start to the workers sharing its store
    /// ([`crate::worker`]) instead of running them in this process: the server only
    /// records them, and streams their events from the store as the workers record them.
    /// Its store must have a work queue (PostgreSQL).
    #[must_use]
    pub fn submit_to_workers(mut self) -> Self {
        self.workers = true;
        self
    }

    /// The service as an axum router, to serve or to nest in a larger app.
    pub fn router(self) -> Router {
        let state = Arc::new(Shared {
            store: Arc::clone(&self.registry.store),
            registry: self.registry,
            live: Arc::new(LiveRuns::new()),
            metrics: Metrics::new(),
            token: self.token,
            workers: self.workers,
        });
        Router::new()
            .route("/", get(page))
            .route("/docs", get(docs))
            .route("/openapi.json", get(openapi))
            .route("/workflows", get(list_workflows))
            .route("/workflows/{name}/graph", get(workflow_graph))
            .route("/workflows/{name}/runs", post(start_run))
            .route("/runs", get(list_runs))
            .route("/runs/{id}", get(show_run))
            .route("/runs/{id}/events", get(run_events))
            .route("/runs/{id}/ws", get(run_socket))
            .route("/runs/{id}/resume", post(resume_run))
            .route("/runs/{id}/cancel", post(cancel_run))
            .route("/metrics", get(metrics))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(middleware::from_fn_with_state(
                Arc::clone(&state),
                authorize,
            ))
            .layer(DefaultBodyLimit::max(self.body_limit))
            .with_state(state)
    }

    /// Listens on `addr` (for example [`DEFAULT_ADDR`], or `127.0.0.1:0` for a free port).
    /// Awaiting the [`Listening`] serves until the process ends.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn bind(self, addr: impl tokio::net::ToSocketAddrs) -> io::Result<Listening> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Listening {
            listener,
            addr,
            router: self.router(),
        })
    }
}

/// A [`Server`] bound to its address; await it (or call [`Listening::run_until`]) to serve.
#[derive(Debug)]
pub struct Listening {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    router: Router,
}

impl Listening {
    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then stops taking connections and lets the open
    /// ones finish.
    ///
    /// # Errors
    ///
    /// When accepting connections fails.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

impl IntoFuture for Listening {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { axum::serve(self.listener, self.router).await })
    }
}

/// What every handler shares.
struct Shared {
    registry: Registry,
    store: Arc<dyn Store>,
    live: Arc<LiveRuns>,
    metrics: Metrics,
    token: Option<String>,
    /// Whether runs are submitted to workers rather than run here.
    workers: bool,
}

type AppState = State<Arc<Shared>>;

impl Shared {
    /// Follows a part of a run this process drives: counts its events in the metrics, and
    /// marks it done once its end is stored.
    fn track(self: &Arc<Self>, workflow: &'static str, run: JsonRun) -> follow::LiveRun {
        let id = run.id();
        let (live, done, generation) = self.live.add(id, run.events(), run.canceller());
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let mut events = run.events();
            while let Some(event) = events.next().await {
                shared.metrics.observe(workflow, &event);
            }
            match run.wait().await {
                Ok(_) | Err(crate::RunError::Waiting { .. } | crate::RunError::Cancelled) => {}
                Err(error) => tracing::warn!(run = %id, %error, "run ended with an error"),
            }
            shared.live.remove(id, generation);
            let _ = done.send(true);
        });
        live
    }

    /// Every event of a run so far: the stored ones, then the live ones not yet stored.
    async fn events_now(&self, id: RunId) -> Result<Vec<Event>, ApiError> {
        let mut events = self.store.events(id, 0).await?;
        if let Some(run) = self.live.get(id) {
            let next = events.last().map_or(0, |e| e.seq + 1);
            let mut stream = run.events;
            stream.seek(next.max(stream.first_seq()));
            events.extend(stream.snapshot().into_iter().filter(|e| e.seq >= next));
        }
        Ok(events)
    }

    async fn run_view(&self, id: RunId) -> Result<RunView, ApiError> {
        let record = self.store.run(id).await?;
        let checkpoints = self.store.checkpoints(id).await?;
        let state = self.store.state(id).await?;
        let interrupt = self.store.interrupt(id).await?;
        let events = self.events_now(id).await?;
        let graph = self.registry.graph(&record.workflow);
        Ok(RunView::new(
            RunParts {
                record,
                checkpoints,
                state,
                interrupt,
                events,
            },
            graph,
        ))
    }

    /// Answers a run just started or resumed: at once (202), or once it ends or pauses.
    async fn answer_started(
        &self,
        live: follow::LiveRun,
        id: RunId,
        wait: bool,
    ) -> Result<Response, ApiError> {
        if !wait {
            let body = json!({"id": id, "status": RunStatus::Running});
            return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
        }
        let mut done = live.done;
        let _ = done.wait_for(|done| *done).await;
        Ok(Json(self.run_view(id).await?).into_response())
    }

    /// The answer to a request that submitted run `id` to the workers: at once, or once the
    /// store says it has ended (or waits for an answer).
    async fn answer_submitted(&self, id: RunId, wait: bool) -> Result<Response, ApiError> {
        if !wait {
            let body = json!({"id": id, "status": RunStatus::Running});
            return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
        }
        loop {
            let status = self.store.run(id).await?.status;
            if status.is_final() || status == RunStatus::Waiting {
                return Ok(Json(self.run_view(id).await?).into_response());
            }
            tokio::time::sleep(follow::POLL).await;
        }
    }
}

// ---- Access. ----

async fn authorize(State(shared): AppState, request: Request, next: Next) -> Response {
    let Some(token) = &shared.token else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let query = request.uri().query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("access_token="))
    });
    if bearer == Some(token.as_str()) || query == Some(token.as_str()) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this server needs a bearer token: send `Authorization: Bearer <token>`",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route: see /openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method: see /openapi.json",
    )
}

// ---- Static documents. ----

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

// ---- Workflows. ----

async fn list_workflows(State(shared): AppState) -> Json<Value> {
    let workflows: Vec<Value> = shared
        .registry
        .workflows
        .iter()
        .map(|entry| {
            let graph = entry.durable.graph();
            let example = entry
                .input_schema
                .get("examples")
                .and_then(|examples| examples.get(0))
                .cloned();
            json!({
                "name": graph.name,
                "doc": graph.doc,
                "kind": views::kind(graph),
                "input_schema": entry.input_schema,
                "output_schema": entry.output_schema,
                "input_example": example,
                "graph": GraphView::of(graph),
            })
        })
        .collect();
    Json(json!({ "workflows": workflows }))
}

async fn workflow_graph(
    State(shared): AppState,
    Path(name): Path<String>,
) -> Result<Json<GraphView>, ApiError> {
    let entry = shared.registry.find(&name)?;
    Ok(Json(GraphView::of(entry.durable.graph())))
}

/// `?wait=true`.
#[derive(Deserialize)]
struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(query)| query)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

/// The request body as JSON: 413 when it is over the limit, 400 when it is not JSON.
fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the body is larger than this server accepts",
            )
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    })?;
    serde_json::from_slice(&body).map_err(|error| ApiError::malformed_json(&error))
}

async fn start_run(
    State(shared): AppState,
    Path(name): Path<String>,
    wait: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let wait = query(wait)?.wait;
    let entry = shared.registry.find(&name)?;
    let input = json_body(body)?;
    if shared.workers {
        let id = entry.durable.submit_json(input).await?;
        return shared.answer_submitted(id, wait).await;
    }
    let run = entry.durable.start_run(input).await?;
    let id = run.id();
    let live = shared.track(entry.durable.graph().name, run);
    shared.answer_started(live, id, wait).await
}

// ---- Runs. ----

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    50
}

async fn list_runs(
    State(shared): AppState,
    list: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let limit = query(list)?.limit;
    let runs = shared.store.runs(limit).await?;
    let runs: Vec<RunSummaryView> = runs.iter().map(RunSummaryView::from).collect();
    Ok(Json(json!({ "runs": runs })))
}

async fn show_run(
    State(shared): AppState,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let id = parse_run_id(&id)?;
    Ok(Json(shared.run_view(id).await?))
}

async fn resume_run(
    State(shared): AppState,
    Path(id): Path<String>,
    wait: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let wait = query(wait)?.wait;
    let id = parse_run_id(&id)?;
    let record = shared.store.run(id).await?;
    let entry = shared.registry.find(&record.workflow)?;
    let answer = json_body(body)?;
    if record.status != RunStatus::Waiting {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_waiting",
            format!(
                "run {id} does not wait for an answer: it is {}",
                record.status
            ),
        ));
    }
    let run = entry.durable.answer_run(id, answer).await?;
    let live = shared.track(entry.durable.graph().name, run);
    shared.answer_started(live, id, wait).await
}

async fn cancel_run(
    State(shared): AppState,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let id = parse_run_id(&id)?;
    let record = shared.store.run(id).await?;
    if record.status.is_final() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_ended",
            format!("run {id} has ended: it is {}", record.status),
        ));
    }
    if let Some(live) = shared.live.get(id) {
        live.canceller.cancel();
        let mut done = live.done;
        let _ = tokio::time::timeout(Duration::from_secs(10), done.wait_for(|done| *done)).await;
    } else {
        // Nothing drives it here: it waits for an answer, or its process died. It ends as
        // cancelled, with the event that says so.
        let events = shared.store.events(id, 0).await?;
        let (seq, at) = events
            .last()
            .map_or((0, Duration::ZERO), |event| (event.seq + 1, event.at));
        let cancelled = Event {
            seq,
            at,
            kind: EventKind::RunCancelled { duration: at },
        };
        shared
            .store
            .finish_run(id, RunStatus::Cancelled, None, None, vec![cancelled])
            .await?;
    }
    Ok(Json(shared.run_view(id).await?))
}

/// `?from=N`.
#[derive(Deserialize)]
struct FromQuery {
    from: Option<u64>,
}

/// Where an event route starts: after the SSE `Last-Event-ID` (a browser reconnecting sends
/// it, to the URL it first opened), else `?from`, else 0.
fn first_event(from: Option<u64>, headers: &HeaderMap) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|seq| seq + 1)
        .or(from)
        .unwrap_or(0)
}

fn event_name(event: &Event) -> String {
    match serde_json::to_value(event) {
        Ok(Value::Object(map)) => map
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("event")
            .to_owned(),
        _ => "event".to_owned(),
    }
}

async fn run_events(
    State(shared): AppState,
    Path(id): Path<String>,
    from: Result<Query<FromQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let from = first_event(query(from)?.from, &headers);
    let id = parse_run_id(&id)?;
    shared.store.run(id).await?;
    let follower = Follower::new(
        Arc::clone(&shared.store),
        Arc::clone(&shared.live),
        id,
        from,
    );
    let stream = futures_util::stream::unfold(follower, |mut follower| async move {
        let event = match follower.next().await? {
            Ok(event) => SseEvent::default()
                .id(event.seq.to_string())
                .event(event_name(&event))
                .json_data(&event)
                .unwrap_or_else(|_| SseEvent::default().comment("an event did not serialize")),
            Err(error) => SseEvent::default()
                .event("store_error")
                .data(format!("the store failed: {error}")),
        };
        Some((Ok::<_, Infallible>(event), follower))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

async fn run_socket(
    State(shared): AppState,
    Path(id): Path<String>,
    from: Result<Query<FromQuery>, QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let from = query(from)?.from.unwrap_or(0);
    let id = parse_run_id(&id)?;
    shared.store.run(id).await?;
    let follower = Follower::new(
        Arc::clone(&shared.store),
        Arc::clone(&shared.live),
        id,
        from,
    );
    Ok(upgrade.on_upgrade(move |socket| send_events(socket, follower)))
}

async fn send_events(mut socket: WebSocket, mut follower: Follower) {
    while let Some(event) = follower.next().await {
        let text = match event {
            Ok(event) => serde_json::to_string(&event).unwrap_or_default(),
            Err(error) => json!({"error": format!("the store failed: {error}")}).to_string(),
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

async fn metrics(State(shared): AppState) -> Result<Response, ApiError> {
    let waiting = shared.store.count_runs(RunStatus::Waiting).await?;
    let running = shared.store.count_runs(RunStatus::Running).await?;
    let text = shared.metrics.render(waiting, running);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// The `serve` command of a program's command line (features `http` and `cli`): mount it
/// as a clap subcommand (`Serve(ServeArgs)`), then call [`ServeArgs::serve`].
///
/// ```text
/// serve [--addr 127.0.0.1:8080] [--token TOKEN] [--workers]
/// ```
#[cfg(feature = "cli")]
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct ServeArgs {
    /// The address to listen on; loopback only unless told otherwise.
    #[arg(long, default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// A bearer token every request must carry (`Authorization: Bearer <token>`).
    #[arg(long, env = "WORKFLOW_TOKEN")]
    pub token: Option<String>,
    /// Submit runs to the workers sharing the database (`worker`) instead of running them
    /// in this process.
    #[arg(long)]
    pub workers: bool,
}

#[cfg(feature = "cli")]
impl ServeArgs {
    /// Serves `registry` on the address given until Ctrl-C, printing where to `stderr`.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound or serving fails.
    pub async fn serve(self, registry: Registry) -> io::Result<()> {
        let mut server = serve(registry);
        if let Some(token) = self.token {
            server = server.token(token);
        }
        if self.workers {
            server = server.submit_to_workers();
        }
        let listening = server.bind(&self.addr).await?;
        eprintln!("serving on http://{}/", listening.local_addr());
        listening
            .run_until(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    }
}
