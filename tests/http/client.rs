//! A small HTTP client for the tests: JSON requests, and Server-Sent Events read as they
//! arrive, over a real loopback connection.

use std::collections::VecDeque;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// How long a test waits for any one answer or event before failing.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    hyper: Hyper<HttpConnector, Full<Bytes>>,
}

/// An answer: its status, content type and body (parsed as JSON when it is JSON).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The `error.code` of a JSON error answer, checking its shape.
    pub(crate) fn error_code(&self) -> String {
        let body = self.json();
        let error = &body["error"];
        assert_eq!(error["status"], self.status, "{body}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        error["code"].as_str().expect("an error code").to_owned()
    }
}

impl Client {
    pub(crate) fn new(addr: std::net::SocketAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            base: format!("http://{addr}"),
            token: None,
            hyper: Hyper::builder(TokioExecutor::new())
                .pool_max_idle_per_host(64)
                .build(connector),
        }
    }

    /// The server's address.
    pub(crate) fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// A request with any method and no body.
    pub(crate) async fn send_method(&self, method: &str, path: &str) -> Reply {
        let request = self.request(method, path).body(Full::default()).unwrap();
        Self::reply(self.send(request).await).await
    }

    pub(crate) fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    fn request(&self, method: &str, path: &str) -> hyper::http::request::Builder {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request
    }

    async fn send(&self, request: hyper::Request<Full<Bytes>>) -> hyper::Response<Incoming> {
        tokio::time::timeout(PATIENCE, self.hyper.request(request))
            .await
            .expect("the server answers in time")
            .expect("the request reaches the server")
    }

    async fn reply(response: hyper::Response<Incoming>) -> Reply {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
            .await
            .expect("the body arrives in time")
            .expect("the body reads")
            .to_bytes();
        Reply {
            status,
            content_type,
            text: String::from_utf8(body.to_vec()).expect("UTF-8"),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        let request = self.request("GET", path).body(Full::default()).unwrap();
        Self::reply(self.send(request).await).await
    }

    pub(crate) async fn post(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        let request = self
            .request("POST", path)
            .header("content-type", "application/json")
            .body(Full::new(body.into()))
            .unwrap();
        Self::reply(self.send(request).await).await
    }

    /// Opens a run's event stream; `last_event_id` as a reconnecting client sends it.
    pub(crate) async fn events(&self, path: &str, last_event_id: Option<u64>) -> Sse {
        let mut request = self
            .request("GET", path)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = self.send(request.body(Full::default()).unwrap()).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an SSE stream"
        );
        Sse {
            body: response.into_body(),
            buffer: String::new(),
            ready: VecDeque::new(),
        }
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub(crate) struct SseEvent {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) data: Value,
}

/// A Server-Sent Events stream, read event by event.
pub(crate) struct Sse {
    body: Incoming,
    buffer: String,
    ready: VecDeque<SseEvent>,
}

impl Sse {
    /// The next event; `None` when the server ended the stream.
    pub(crate) async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let frame = tokio::time::timeout(PATIENCE, self.body.frame())
                .await
                .expect("an event arrives in time")?
                .expect("the stream reads");
            let Ok(data) = frame.into_data() else {
                continue;
            };
            self.buffer
                .push_str(std::str::from_utf8(&data).expect("UTF-8"));
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut name, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().expect("a numeric id"));
                    } else if let Some(v) = line.strip_prefix("event:") {
                        v.trim().clone_into(&mut name);
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                // Comments (keep-alives) have no id.
                if let Some(id) = id {
                    let data = serde_json::from_str(&data).expect("JSON data");
                    self.ready.push_back(SseEvent { id, name, data });
                }
            }
        }
    }

    /// Every event until the server ends the stream.
    pub(crate) async fn collect(mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}
