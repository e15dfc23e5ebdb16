//! Request bodies for the form and API handlers, with the reason a body was refused told in the
//! dashboard's own terms: 413 over the size limit, 408 when it did not arrive within
//! `body_read_timeout_ms` (tower-http's deadline, see `crate::build_app`), instead of axum's
//! generic "Failed to buffer the request body".

use crate::error::{ApiError, AppError};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, Request};

/// A form post's body; refusals are pages.
#[derive(Debug)]
pub struct FormBody(pub Bytes);

/// An API post's body; refusals are JSON.
#[derive(Debug)]
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for FormBody {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        read(request, state).await.map(FormBody)
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(JsonBody(read(request, state).await?))
    }
}

/// The whole body, or why it was refused.
async fn read<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, AppError> {
    Bytes::from_request(request, state).await.map_err(refusal)
}

fn refusal(rejection: BytesRejection) -> AppError {
    match rejection {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            AppError::PayloadTooLarge(format!(
                "The request body is larger than the {} KiB the dashboard accepts.",
                crate::MAX_BODY_BYTES / 1024
            ))
        }
        BytesRejection::FailedToBufferBody(FailedToBufferBody::UnknownBodyError(error))
            if timed_out(&error) =>
        {
            AppError::RequestTimeout(
                "The request body did not arrive in time; send the whole body at once.".into(),
            )
        }
        other => AppError::BadRequest(format!("The request body could not be read: {other}.")),
    }
}

/// Whether the body failed because its deadline passed.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        current = error.source();
    }
    false
}
