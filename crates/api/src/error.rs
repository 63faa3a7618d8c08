//! The error model shared by every route.
//!
//! Chroma's Python client picks the exception class from the `error` name in the body,
//! and its JavaScript client picks it from the HTTP status, so each variant fixes both.

use std::fmt;

/// An error returned to a client as `{"error": NAME, "message": TEXT}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

/// The error classes the Chroma clients understand, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400 `InvalidArgumentError`: a value that fails validation.
    InvalidArgument,
    /// 401 `AuthorizationError`: no usable credentials.
    Unauthenticated,
    /// 403 `AuthError`: authenticated, but not allowed.
    Forbidden,
    /// 403 `ChromaError`: an operation the configuration turns off, such as reset.
    Disabled,
    /// 404 `NotFoundError`.
    NotFound,
    /// 405 `ChromaError`: the route exists, the method does not.
    MethodNotAllowed,
    /// 409 `ChromaError`: the resource already exists.
    Conflict,
    /// 410 `Unimplemented`: the v1 API.
    Gone,
    /// 408 `ChromaError`: the request body arrived too slowly, or a query ran past its
    /// deadline.
    RequestTimeout,
    /// 413 `BatchSizeExceededError`: the body or batch is over a limit.
    PayloadTooLarge,
    /// 414 `ChromaError`: a request line too long to parse.
    UriTooLong,
    /// 415 `InvalidArgumentError`: a content encoding other than identity.
    UnsupportedMediaType,
    /// 422 `ChromaError`: JSON of the wrong type or shape.
    Unprocessable,
    /// 429 `RateLimitError`: the principal is over its request rate or concurrency.
    TooManyRequests,
    /// 431 `ChromaError`: request headers too large to parse.
    HeadersTooLarge,
    /// 500 `InternalError`.
    Internal,
    /// 501 `ChromaError`: a route Ravelin does not implement.
    NotImplemented,
    /// 502 `ChromaError`: the upstream Chroma of a gateway failed or sent an invalid
    /// response.
    BadGateway,
    /// 503 `ChromaError`: the server cannot take the request now.
    Unavailable,
    /// 504 `ChromaError`: the upstream Chroma of a gateway did not respond in time.
    GatewayTimeout,
}

impl ErrorKind {
    /// Returns the HTTP status code for this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden | ErrorKind::Disabled => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::Gone => 410,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UriTooLong => 414,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Unprocessable => 422,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::HeadersTooLarge => 431,
            ErrorKind::Internal => 500,
            ErrorKind::NotImplemented => 501,
            ErrorKind::BadGateway => 502,
            ErrorKind::Unavailable => 503,
            ErrorKind::GatewayTimeout => 504,
        }
    }

    /// Returns the `error` name the Chroma clients map to an exception class.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument | ErrorKind::UnsupportedMediaType => "InvalidArgumentError",
            ErrorKind::Unauthenticated => "AuthorizationError",
            ErrorKind::Forbidden => "AuthError",
            ErrorKind::NotFound => "NotFoundError",
            ErrorKind::Gone => "Unimplemented",
            ErrorKind::PayloadTooLarge => "BatchSizeExceededError",
            ErrorKind::TooManyRequests => "RateLimitError",
            ErrorKind::Internal => "InternalError",
            ErrorKind::Disabled
            | ErrorKind::RequestTimeout
            | ErrorKind::MethodNotAllowed
            | ErrorKind::Conflict
            | ErrorKind::Unprocessable
            | ErrorKind::UriTooLong
            | ErrorKind::HeadersTooLarge
            | ErrorKind::NotImplemented
            | ErrorKind::BadGateway
            | ErrorKind::Unavailable
            | ErrorKind::GatewayTimeout => "ChromaError",
        }
    }
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unprocessable, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// Creates an internal failure. The message goes to the client, so callers pass a
    /// fixed text and log the detail themselves.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// Serializes the error as Chroma's error body.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "error": self.kind.name(), "message": self.message }).to_string()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// Returns the error for a tenant that does not exist, or that the principal's grants
/// do not reach. The two must be indistinguishable.
pub fn tenant_not_found(tenant: &str) -> ApiError {
    ApiError::not_found(format!("Tenant [{tenant}] not found"))
}

/// Returns the error for a database that does not exist, or that the principal's
/// grants do not reach.
pub fn database_not_found(database: &str) -> ApiError {
    ApiError::not_found(format!(
        "Database [{database}] not found. Are you sure it exists?"
    ))
}

/// Returns the error for a collection that does not exist, that lies outside the
/// tenant and database in the path, or that the principal's grants do not reach. `collection` is
/// the name or id as the request gave it.
pub fn collection_not_found(collection: &str) -> ApiError {
    ApiError::not_found(format!("Collection [{collection}] does not exist"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_shape() {
        let error = ApiError::not_found("Collection [x] does not exist");
        let body: serde_json::Value = serde_json::from_str(&error.to_json()).unwrap();
        assert_eq!(body["error"], "NotFoundError");
        assert_eq!(body["message"], "Collection [x] does not exist");
        assert_eq!(error.status(), 404);
    }

    #[test]
    fn invalid_argument_uses_client_table_name() {
        assert_eq!(ErrorKind::InvalidArgument.name(), "InvalidArgumentError");
        assert_eq!(ErrorKind::InvalidArgument.status(), 400);
    }
}
