//! The dashboard's one error type: what went wrong, shown to people as a page and to programs
//! as JSON. Server errors are logged here and never show their internals.

use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A field or body the user must fix; the message names it.
    #[error("{0}")]
    BadRequest(String),
    /// What was not found, in words.
    #[error("{0}")]
    NotFound(String),
    /// Was there, is no more: a message retention removed from Kafka.
    #[error("{0}")]
    Gone(String),
    /// Kafka is unreachable or the reply listener is not ready.
    #[error("{0}")]
    Unavailable(String),
    /// No valid credentials (the middleware adds the `WWW-Authenticate` challenges).
    #[error("{0}")]
    Unauthorized(String),
    /// Refused on purpose: a form post without a valid anti-forgery token, or from another site.
    #[error("{0}")]
    Forbidden(String),
    /// An API post whose body is not declared as JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A `Host` that is not this dashboard's (see `crate::hosts`).
    #[error("{0}")]
    Misdirected(String),
    /// A body over the size limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A body that did not arrive within `body_read_timeout_ms`.
    #[error("{0}")]
    RequestTimeout(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Gone(_) => StatusCode::GONE,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the user may see: everything but the details of internal errors.
    fn public_message(&self) -> String {
        match self {
            AppError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                "Something went wrong on our side; the details are in the dashboard's log.".into()
            }
            other => other.to_string(),
        }
    }

    /// The same error as a JSON body, for the API routes.
    pub fn into_json(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.public_message() });
        (status, Json(body)).into_response()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    reason: String,
    message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let page = ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error").to_owned(),
            message: self.public_message(),
        };
        (status, page).into_response()
    }
}

/// An [`AppError`] answered as JSON: the error type of the `/api` routes.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_json()
    }
}
