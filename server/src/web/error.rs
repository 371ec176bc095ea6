//! The one error type of the HTTP layer: a status, a stable code and a message for people,
//! as JSON `{code, message, details?}` (pages render it in their layout instead). Errors of the
//! layers below (accounts, district) become one here; nothing below names an HTTP status.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::accounts::AccountError;
use crate::district::DistrictError;

/// One problem of a rejected import, by line.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The line of the input (1 = the first).
    pub line: usize,
    /// What is wrong there.
    pub message: String,
}

/// A JSON error with a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<ErrorDetail>,
    retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: Vec::new(), retry_after: None }
    }

    pub(crate) fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "{context}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "something went wrong on the server")
    }

    pub(crate) fn too_many(wait: Duration) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("too many failed attempts; try again in {} seconds", wait.as_secs().max(1)),
        );
        e.retry_after = Some(wait);
        e
    }
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How long the client should wait before trying again, when it must.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, for programs (`not_found`, `invalid_json`, …).
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// For imports: each problem, by line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code, message: self.message, details: self.details };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(wait) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::BadCredentials => ApiError::new(StatusCode::UNAUTHORIZED, "bad_credentials", e.to_string()),
            AccountError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "exists", e.to_string()),
            AccountError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            AccountError::Invalid(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
            AccountError::UnknownCode => ApiError::new(StatusCode::UNAUTHORIZED, "unknown_code", e.to_string()),
            AccountError::ExpiredCode => ApiError::new(StatusCode::GONE, "expired_code", e.to_string()),
            AccountError::UsedCode => ApiError::new(StatusCode::GONE, "used_code", e.to_string()),
            AccountError::ActorTaken(_) => ApiError::new(StatusCode::CONFLICT, "actor_taken", e.to_string()),
            AccountError::ActorReserved(_) => ApiError::new(StatusCode::CONFLICT, "actor_reserved", e.to_string()),
            AccountError::TooManyActors { .. } => ApiError::new(StatusCode::CONFLICT, "too_many_actors", e.to_string()),
            AccountError::Store(_) | AccountError::Random(_) | AccountError::Hashing(_) => {
                ApiError::internal("account operation failed", e)
            }
        }
    }
}

impl From<DistrictError> for ApiError {
    fn from(e: DistrictError) -> Self {
        e.log();
        let status = district_status(&e);
        let (code, message) = e.code_and_message();
        let mut error = ApiError::new(status, code, message);
        if let DistrictError::Invalid { details, .. } = e {
            error.details = details.into_iter().map(|d| ErrorDetail { line: d.line, message: d.message }).collect();
        }
        error
    }
}

/// The HTTP status of a district error.
pub fn district_status(e: &DistrictError) -> StatusCode {
    match e {
        DistrictError::NotFound(_) => StatusCode::NOT_FOUND,
        DistrictError::BadRequest { .. } => StatusCode::BAD_REQUEST,
        DistrictError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        DistrictError::Conflict { .. } => StatusCode::CONFLICT,
        DistrictError::Forbidden(_) => StatusCode::FORBIDDEN,
        DistrictError::Store(_) | DistrictError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// District handlers return their own error; it answers as an [`ApiError`].
impl IntoResponse for DistrictError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

/// A JSON request body, like [`axum::Json`], whose rejection (not JSON, wrong shape, too large)
/// answers the API's JSON error (`invalid_json`, with axum's status and explanation) instead of
/// plain text, as the OpenAPI document promises.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match <Json<T> as axum::extract::FromRequest<S>>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(ApiError::new(rejection.status(), "invalid_json", rejection.body_text())),
        }
    }
}
