//! The handler's error type, and the typed failures of store calls.
//!
//! A handler returns [`Result<Response>`](Result). An [`Error`] becomes the response:
//! made with [`Error::new`] it answers with its status and text; a [`StoreError`] answers
//! by its kind (400 for an invalid argument or a limit, 416 for an unsatisfiable range,
//! 500 otherwise); anything else converted with `?` answers `500 internal error` and its
//! text goes to the node's log with the request id, never to the client.
//!
//! Store calls fail with [`Error::Store`], so a guest can tell the cases apart:
//!
//! ```ignore
//! match env.sql("DB")?.query("SELECT * FROM todos", params![]).await {
//!     Err(Error::Store(StoreError::NotFound(_))) => create_table_and_retry().await,
//!     other => other?,
//! }
//! ```

use std::fmt;

use crate::Response;

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error a handler returns; it becomes the response (see the module docs).
#[non_exhaustive]
pub enum Error {
    /// Answered with this status and text.
    Response {
        /// The status code.
        status: u16,
        /// The body, as plain text.
        message: String,
    },
    /// Answered `500 internal error`; the text goes to the node's log.
    Internal(String),
    /// A store call failed.
    Store(StoreError),
}

/// Why a store call failed: `outpost:edge`'s error variant. Each text names the store,
/// the operation and the key, then the reason.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The tenant's config declares no binding of this name.
    NotDeclared(String),
    /// Something the call needs does not exist (a SQL table or column).
    NotFound(String),
    /// An argument is malformed (an empty key, a bad cursor, `..` in a blob key).
    InvalidArgument(String),
    /// An argument or result is over a limit; `limit` is its name in the docs.
    LimitExceeded {
        /// The limit, e.g. `kv.value_bytes`.
        limit: String,
        /// What was over it.
        reason: String,
    },
    /// The range asked for lies outside the object, which has `size` bytes.
    RangeNotSatisfiable {
        /// The object's size in bytes.
        size: u64,
    },
    /// The store is at its size cap.
    Full(String),
    /// The request's deadline passed while the store worked.
    Deadline,
    /// The store cannot be reached now; a retry may work.
    Unavailable(String),
    /// The store refused or failed the call (a SQL error, an I/O or S3 error).
    Failed(String),
}

impl StoreError {
    /// The status this failure answers with when a handler returns it.
    pub fn status(&self) -> u16 {
        match self {
            StoreError::InvalidArgument(_) | StoreError::LimitExceeded { .. } => 400,
            StoreError::RangeNotSatisfiable { .. } => 416,
            StoreError::Deadline => 504,
            StoreError::Unavailable(_) => 503,
            StoreError::NotDeclared(_)
            | StoreError::NotFound(_)
            | StoreError::Full(_)
            | StoreError::Failed(_) => 500,
        }
    }

    /// Whether the client caused it (a 4xx), so its text may be shown.
    fn is_clients(&self) -> bool {
        (400..500).contains(&self.status())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotDeclared(text)
            | StoreError::NotFound(text)
            | StoreError::InvalidArgument(text)
            | StoreError::Full(text)
            | StoreError::Unavailable(text)
            | StoreError::Failed(text) => f.write_str(text),
            StoreError::LimitExceeded { limit, reason } => write!(f, "{reason} ({limit})"),
            StoreError::RangeNotSatisfiable { size } => {
                write!(
                    f,
                    "the range cannot be satisfied: the object is {size} bytes"
                )
            }
            StoreError::Deadline => f.write_str("the request's deadline passed"),
        }
    }
}

impl Error {
    /// An error answered with `status` and `message` as plain text.
    pub fn new(status: u16, message: impl Into<String>) -> Error {
        Error::Response {
            status,
            message: message.into(),
        }
    }

    /// A 500 whose `message` goes to the node's log, not to the client.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal(message.into())
    }

    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(400, message)
    }

    /// 404 `not found`.
    pub fn not_found() -> Error {
        Error::new(404, "not found")
    }

    /// 405 `method not allowed`.
    pub fn method_not_allowed() -> Error {
        Error::new(405, "method not allowed")
    }

    /// The same error answered with `status`, its message shown to the client.
    pub fn with_status(self, status: u16) -> Error {
        Error::new(status, self.message())
    }

    /// The store failure, if a store call caused this.
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            Error::Store(error) => Some(error),
            _ => None,
        }
    }

    /// The error's text.
    pub fn message(&self) -> String {
        match self {
            Error::Response { message, .. } | Error::Internal(message) => message.clone(),
            Error::Store(error) => error.to_string(),
        }
    }

    /// The status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            Error::Response { status, .. } => *status,
            Error::Internal(_) => 500,
            Error::Store(error) => error.status(),
        }
    }

    pub(crate) fn into_response(self) -> Response {
        let shown = match &self {
            Error::Response { .. } => true,
            Error::Internal(_) => false,
            Error::Store(error) => error.is_clients(),
        };
        if shown {
            Response::text(self.message()).with_status(self.status())
        } else {
            eprintln!("handler error: {}", self.message());
            Response::text("internal error").with_status(self.status())
        }
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Error {
        Error::Store(error)
    }
}

/// Any error type converts with `?`, as a 500 whose details stay in the log.
impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Error {
        Error::Internal(error.to_string())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_answer_by_kind() {
        let cases = [
            (StoreError::InvalidArgument("bad".into()), 400),
            (
                StoreError::LimitExceeded {
                    limit: "kv.key_bytes".into(),
                    reason: "too long".into(),
                },
                400,
            ),
            (StoreError::RangeNotSatisfiable { size: 10 }, 416),
            (StoreError::Deadline, 504),
            (StoreError::Unavailable("down".into()), 503),
            (StoreError::Failed("io".into()), 500),
            (StoreError::NotDeclared("X".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(Error::from(error.clone()).status(), status, "{error:?}");
        }
    }

    #[test]
    fn only_client_errors_show_their_text() {
        assert!(StoreError::InvalidArgument("k".into()).is_clients());
        assert!(!StoreError::Failed("disk".into()).is_clients());
        assert!(!StoreError::NotDeclared("X".into()).is_clients());
    }

    #[test]
    fn a_limit_names_itself_in_the_message() {
        let error = StoreError::LimitExceeded {
            limit: "kv.value_bytes".into(),
            reason: "the value is 30 MiB".into(),
        };
        assert_eq!(error.to_string(), "the value is 30 MiB (kv.value_bytes)");
    }

    #[test]
    fn with_status_shows_an_internal_message() {
        let error = Error::internal("secret detail").with_status(409);
        assert_eq!(
            (error.status(), error.message()),
            (409, "secret detail".to_string())
        );
    }
}
