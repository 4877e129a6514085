//! [`Response`]: what a handler answers, and what `env.fetch` gets back.

use serde::Serialize;
use wstd::http::{Body, HeaderName, HeaderValue};

use crate::Result;

/// An outgoing response.
pub struct Response {
    inner: http::Response<Body>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Response {
        Response::from_body(Body::empty()).with_status(status)
    }

    /// 200 with a UTF-8 text body.
    pub fn text(text: impl Into<String>) -> Response {
        Response::from_body(Body::from(text.into()))
            .with_header("content-type", "text/plain; charset=utf-8")
    }

    /// 200 with `value` as JSON.
    pub fn json<T: Serialize>(value: &T) -> Result<Response> {
        let body = serde_json::to_vec(value)?;
        Ok(Response::from_body(Body::from(body)).with_header("content-type", "application/json"))
    }

    /// 200 with a binary body.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Response {
        Response::from_body(Body::from(bytes.into()))
            .with_header("content-type", "application/octet-stream")
    }

    /// 200 with a body that streams (see [`Body::from_stream`]).
    pub fn stream(body: Body) -> Response {
        Response::from_body(body)
    }

    fn from_body(body: Body) -> Response {
        Response {
            inner: http::Response::new(body),
        }
    }

    /// Replaces the body, keeping status and headers.
    pub fn with_body(self, body: Body) -> Response {
        let (parts, _) = self.inner.into_parts();
        Response {
            inner: http::Response::from_parts(parts, body),
        }
    }

    /// Sets the status; an invalid code becomes 500.
    pub fn with_status(mut self, status: u16) -> Response {
        *self.inner.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        self
    }

    /// Sets a header, replacing any earlier value; invalid names or values are skipped
    /// with a note on stderr.
    pub fn with_header(mut self, name: &str, value: impl AsRef<str>) -> Response {
        match (
            HeaderName::try_from(name),
            HeaderValue::try_from(value.as_ref()),
        ) {
            (Ok(name), Ok(value)) => {
                self.inner.headers_mut().insert(name, value);
            }
            _ => eprintln!("outpost-sdk: skipping invalid header `{name}`"),
        }
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.inner.status().as_u16()
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name)?.to_str().ok()
    }

    /// Every header.
    pub fn headers(&self) -> &crate::HeaderMap {
        self.inner.headers()
    }

    /// The whole body (of a response from `env.fetch`).
    pub async fn read_bytes(self) -> Result<Vec<u8>> {
        let mut body = self.inner.into_body();
        Ok(body
            .contents()
            .await
            .map_err(|e| crate::Error::new(502, format!("reading the response body: {e}")))?
            .to_vec())
    }

    /// The whole body as UTF-8 text.
    pub async fn read_text(self) -> Result<String> {
        String::from_utf8(self.read_bytes().await?)
            .map_err(|_| crate::Error::new(502, "the response body is not UTF-8"))
    }

    /// The whole body as JSON.
    pub async fn read_json<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        let bytes = self.read_bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            crate::Error::new(502, format!("the response is not the JSON expected: {e}"))
        })
    }

    /// The body as it is, to stream on (say, as this handler's own response).
    pub fn into_body(self) -> Body {
        self.inner.into_body()
    }

    pub(crate) fn from_http(inner: http::Response<Body>) -> Response {
        Response { inner }
    }

    /// The underlying `http::Response`.
    pub fn into_http(self) -> http::Response<Body> {
        self.inner
    }
}
