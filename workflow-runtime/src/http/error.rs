//! The API's errors: each is a status and a JSON body that says what went wrong.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::run::{RunError, RunId};
use crate::store::StoreError;

/// An error answered as `{"error": {"status", "code", "message"}}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn malformed_json(error: &serde_json::Error) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {error}"),
        )
    }

    pub(crate) fn unknown_workflow(name: &str, known: &[&str]) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_workflow",
            format!(
                "no workflow named `{name}` is served here (known: {})",
                known.join(", ")
            ),
        )
    }

    pub(crate) fn unknown_run(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_run",
            format!("no run {id} in the store"),
        )
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::UnknownRun(id) => Self::unknown_run(&id.to_string()),
            StoreError::NotWaiting { .. } | StoreError::WrongInterrupt { .. } => {
                Self::new(StatusCode::CONFLICT, "not_waiting", error.to_string())
            }
            StoreError::Ended(_) => {
                Self::new(StatusCode::CONFLICT, "already_ended", error.to_string())
            }
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                format!("the store failed: {error}"),
            ),
        }
    }
}

impl From<RunError> for ApiError {
    fn from(error: RunError) -> Self {
        match error {
            RunError::Decode { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                error.to_string(),
            ),
            RunError::NotResumable { .. } | RunError::GraphChanged { .. } => {
                Self::new(StatusCode::CONFLICT, "not_waiting", error.to_string())
            }
            RunError::Store(store) => store.into(),
            RunError::Unsupported(_) => Self::new(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported",
                error.to_string(),
            ),
            other => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "run", other.to_string()),
        }
    }
}

/// The run id in a path, or a 404 that says it is not one.
pub(crate) fn parse_run_id(text: &str) -> Result<RunId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_run",
            format!("`{text}` is not a run id"),
        )
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {
                "status": self.status.as_u16(),
                "code": self.code,
                "message": self.message,
            }
        });
        (self.status, Json(body)).into_response()
    }
}
