use std::fmt;

use crate::Response;

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error a handler returns; it becomes the response.
///
/// Errors made with [`Error::new`] (or the shorthands) answer with their status and
/// message. Any other error converted with `?` answers `500 internal error`, and its text
/// goes to stderr, which the node logs with the request id.
pub struct Error {
    status: u16,
    message: String,
    internal: bool,
    invalid_argument: bool,
}

impl Error {
    /// An error answered with `status` and `message` as plain text.
    pub fn new(status: u16, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
            internal: false,
            invalid_argument: false,
        }
    }

    /// A 500 whose `message` goes to the node's log, not to the client.
    pub fn internal(message: impl Into<String>) -> Error {
        Error {
            status: 500,
            message: message.into(),
            internal: true,
            invalid_argument: false,
        }
    }

    /// The same error answered with `status` and its message shown to the client.
    pub fn with_status(mut self, status: u16) -> Error {
        self.status = status;
        self.internal = false;
        self
    }

    /// Whether a store refused the call's arguments (a key or value over a limit, a
    /// malformed key, a bad cursor) rather than failing itself: often the client's
    /// fault, worth a 400.
    pub fn is_invalid_argument(&self) -> bool {
        self.invalid_argument
    }

    pub(crate) fn invalid_argument(message: String) -> Error {
        Error {
            invalid_argument: true,
            ..Error::internal(message)
        }
    }

    /// The same error as a 400 showing its message, if it is an invalid argument.
    pub fn bad_request_if_invalid(self) -> Error {
        if self.invalid_argument {
            self.with_status(400)
        } else {
            self
        }
    }

    /// The error's text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(400, message)
    }

    /// 404 `not found`.
    pub fn not_found() -> Error {
        Error::new(404, "not found")
    }

    /// The status this error answers with.
    pub fn status(&self) -> u16 {
        self.status
    }

    pub(crate) fn into_response(self) -> Response {
        if self.internal {
            eprintln!("handler error: {}", self.message);
            Response::text("internal error").with_status(500)
        } else {
            Response::text(self.message).with_status(self.status)
        }
    }
}

/// Any error type converts with `?`, as a 500 whose details stay in the log.
impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Error {
        Error {
            status: 500,
            message: error.to_string(),
            internal: true,
            invalid_argument: false,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
