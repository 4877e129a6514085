//! [`Request`]: the incoming request a handler gets, and requests built to send with
//! `env.fetch` (proxies forward the incoming one with [`Request::forward_to`]).

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use serde::de::DeserializeOwned;
use wstd::http::{Body, HeaderMap, Method, Uri};

use crate::{Error, Result};

/// A request: the incoming one a handler gets (whose path is the client's full original
/// path: routes do not strip their prefix), or one built to send with [`Env::fetch`].
///
/// [`Env::fetch`]: crate::Env::fetch
pub struct Request {
    inner: http::Request<Body>,
}

/// Headers that describe one connection, not the message: never forwarded.
pub(crate) const HOP_BY_HOP: [&str; 9] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

impl Request {
    /// A request with no headers and an empty body, to send with `env.fetch`.
    pub fn new(method: Method, url: &str) -> Result<Request> {
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::internal(format!("`{url}` is not a URL: {e}")))?;
        let mut inner = http::Request::new(Body::empty());
        *inner.method_mut() = method;
        *inner.uri_mut() = uri;
        Ok(Request { inner })
    }

    /// The same request (method, headers, body) sent to `url` instead: how a proxy
    /// forwards what it received. Headers about the client's connection (`host`,
    /// `connection`, `transfer-encoding`, …) are dropped; the node sets `host` from `url`.
    pub fn with_url(mut self, url: &str) -> Result<Request> {
        *self.inner.uri_mut() = url
            .parse()
            .map_err(|e| Error::internal(format!("`{url}` is not a URL: {e}")))?;
        for name in HOP_BY_HOP {
            self.inner.headers_mut().remove(name);
        }
        Ok(self)
    }

    /// The same request sent to the same path and query on `origin` (`https://host:port`,
    /// no path): what a proxy does. As [`Request::with_url`], connection headers are
    /// dropped.
    pub fn forward_to(self, origin: &str) -> Result<Request> {
        let target = forward_url(origin, self.path(), self.query());
        self.with_url(&target)
    }

    /// Sets a header, replacing any earlier value; invalid names or values are skipped
    /// with a note on stderr.
    pub fn with_header(mut self, name: &str, value: impl AsRef<str>) -> Request {
        match (
            http::HeaderName::try_from(name),
            http::HeaderValue::try_from(value.as_ref()),
        ) {
            (Ok(name), Ok(value)) => {
                self.inner.headers_mut().insert(name, value);
            }
            _ => eprintln!("outpost-sdk: skipping invalid header `{name}`"),
        }
        self
    }

    /// Sends this `GET` through the tenant's cache as `options` say (when the tenant's
    /// cache is enabled; otherwise the options are dropped).
    pub fn with_cache(self, options: &crate::CacheOptions) -> Request {
        options
            .headers()
            .into_iter()
            .fold(self, |request, (name, value)| {
                request.with_header(name, value)
            })
    }

    /// Removes a header (every value of it), for example `authorization` before
    /// forwarding a request whose token the edge has already checked.
    pub fn without_header(mut self, name: &str) -> Request {
        self.inner.headers_mut().remove(name);
        self
    }

    /// Replaces the body (bytes, text, or a stream: see [`Body`]).
    pub fn with_body(mut self, body: impl Into<Body>) -> Request {
        *self.inner.body_mut() = body.into();
        self
    }
    pub(crate) fn from_http(inner: http::Request<Body>) -> Request {
        Request { inner }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.inner.method()
    }

    /// The URI as received.
    pub fn uri(&self) -> &Uri {
        self.inner.uri()
    }

    /// The path, e.g. `/todos/3`.
    pub fn path(&self) -> &str {
        self.inner.uri().path()
    }

    /// The path with `prefix` taken off its front (`/` if nothing is left), for a guest
    /// mounted under a path route: `req.path_after("/kv")` of `/kv/get` is `/get`.
    pub fn path_after(&self, prefix: &str) -> &str {
        let path = self.path();
        match path.strip_prefix(prefix.trim_end_matches('/')) {
            Some("") => "/",
            Some(rest) if rest.starts_with('/') => rest,
            _ => path,
        }
    }

    /// The raw query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.inner.uri().query()
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query()?.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// All query parameters, percent-decoded, in order.
    pub fn query_params(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// A header's value, if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name)?.to_str().ok()
    }

    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The whole body as bytes.
    pub async fn bytes(self) -> Result<Vec<u8>> {
        let mut body = self.inner.into_body();
        let bytes = body
            .contents()
            .await
            .map_err(|e| Error::new(400, format!("cannot read the request body: {e}")))?;
        Ok(bytes.to_vec())
    }

    /// The whole body as UTF-8 text.
    pub async fn text(self) -> Result<String> {
        String::from_utf8(self.bytes().await?)
            .map_err(|_| Error::bad_request("the request body is not UTF-8 text"))
    }

    /// The body parsed as JSON; a malformed body is a 400.
    pub async fn json<T: DeserializeOwned>(self) -> Result<T> {
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::bad_request(format!("invalid JSON: {e}")))
    }

    /// The body chunk by chunk, for bodies too large to hold in memory.
    pub fn into_stream(self) -> BodyStream {
        BodyStream(self.inner.into_body().into_boxed_body())
    }

    /// The body as-is, e.g. to pass it on: `Response::stream(req.into_body())` streams it
    /// straight back without holding it.
    pub fn into_body(self) -> Body {
        self.inner.into_body()
    }

    /// Whether the client asks for a WebSocket (the node marks the request
    /// `outpost-upgrade: websocket`, which stays on it when forwarded to an object).
    /// An object accepts one with `state.accept_web_socket(..)`.
    pub fn is_web_socket_upgrade(&self) -> bool {
        self.header("outpost-upgrade") == Some("websocket")
    }

    /// The underlying `http::Request`.
    pub fn into_http(self) -> http::Request<Body> {
        self.inner
    }
}

/// A request body read chunk by chunk.
pub struct BodyStream(UnsyncBoxBody<Bytes, wstd::http::Error>);

impl BodyStream {
    /// The next chunk, or `None` at the end of the body. A body the client broke off (or
    /// one over the tenant's size limit) is an error.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            match self.0.frame().await {
                None => return Ok(None),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                    // Trailers carry no body bytes.
                }
                Some(Err(error)) => {
                    return Err(Error::new(
                        400,
                        format!("cannot read the request body: {error}"),
                    ));
                }
            }
        }
    }
}

/// `origin` + `path` + `?query`.
fn forward_url(origin: &str, path: &str, query: Option<&str>) -> String {
    let origin = origin.trim_end_matches('/');
    match query {
        Some(query) => format!("{origin}{path}?{query}"),
        None => format!("{origin}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str) -> Request {
        Request::new(Method::GET, url).expect("a URL")
    }

    #[test]
    fn path_after_strips_a_mount_prefix_on_segment_boundaries() {
        assert_eq!(get("http://x/kv/get").path_after("/kv"), "/get");
        assert_eq!(get("http://x/kv/get").path_after("/kv/"), "/get");
        assert_eq!(get("http://x/kv").path_after("/kv"), "/");
        assert_eq!(get("http://x/kvx/get").path_after("/kv"), "/kvx/get");
        assert_eq!(get("http://x/get").path_after(""), "/get");
    }

    #[test]
    fn forwarding_keeps_path_and_query_on_the_new_origin() {
        assert_eq!(
            forward_url("https://o.example/", "/a/b", Some("x=1")),
            "https://o.example/a/b?x=1"
        );
        assert_eq!(forward_url("http://o:8080", "/", None), "http://o:8080/");
        let forwarded = get("http://edge/api/v1?page=2")
            .with_header("connection", "keep-alive")
            .forward_to("https://origin.example")
            .expect("forwarded");
        assert_eq!(
            forwarded.uri().to_string(),
            "https://origin.example/api/v1?page=2"
        );
        assert_eq!(forwarded.header("connection"), None);
    }
}
