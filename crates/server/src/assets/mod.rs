//! Static assets (`assets = "./public"`): files the node serves for a tenant without running
//! its guest. A request's path maps into the directory as sent (a tenant routed at
//! `example.com/app` keeps `/app/logo.png` as `public/app/logo.png`, as its guest sees
//! the full path too).
//!
//! For `GET` and `HEAD`: the file itself, else `dir/index.html` for `dir/` (and a redirect
//! from `dir` to `dir/`), else `name.html` for `name`. A hit answers with `ETag`,
//! `Last-Modified`, `304` to a matching conditional request, `206` to a single `Range`,
//! and the `.br` or `.gz` sibling when the client accepts it. A miss goes to the guest,
//! except a browser navigation when `not_found_handling` says otherwise.

mod index;
mod path;

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use outpost_cache::conditional;
use outpost_config::{AssetsConfig, NotFoundHandling, WorkerFirst};
use outpost_runtime::{BodyError, WasiBody};

pub use index::AssetsError;
use index::{Content, File};

/// `Cache-Control` for a file whose name carries its content hash.
const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
/// `Cache-Control` for every other file: cache, but ask each time (a 304 is cheap).
const REVALIDATE: HeaderValue = HeaderValue::from_static("public, max-age=0, must-revalidate");

/// One servable path: the file and its precompressed siblings.
struct Asset {
    identity: Arc<File>,
    brotli: Option<Arc<File>>,
    gzip: Option<Arc<File>>,
    content_type: HeaderValue,
    cache_control: HeaderValue,
}

/// A tenant's asset directory, indexed.
pub struct Assets {
    files: HashMap<String, Asset>,
    not_found: NotFoundHandling,
    worker_first: WorkerFirst,
}

/// Which encoding of a file a response carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Brotli,
    Gzip,
}

impl Assets {
    /// Indexes the directory `config` names.
    pub fn load(config: &AssetsConfig) -> Result<Assets, AssetsError> {
        let found = index::read(&config.directory)?;
        let files = found
            .iter()
            .map(|(key, file)| {
                let name = key.rsplit('/').next().unwrap_or_default();
                let content_type = mime_guess::from_path(name)
                    .first()
                    .map(|mime| {
                        let text = mime.type_() == mime_guess::mime::TEXT
                            || mime.subtype() == mime_guess::mime::JAVASCRIPT
                            || mime.subtype() == mime_guess::mime::JSON;
                        if text {
                            format!("{mime}; charset=utf-8")
                        } else {
                            mime.to_string()
                        }
                    })
                    .and_then(|text| HeaderValue::from_str(&text).ok())
                    .unwrap_or(HeaderValue::from_static("application/octet-stream"));
                let asset = Asset {
                    identity: file.clone(),
                    brotli: found.get(&format!("{key}.br")).cloned(),
                    gzip: found.get(&format!("{key}.gz")).cloned(),
                    content_type,
                    cache_control: if index::is_fingerprinted(name) {
                        IMMUTABLE
                    } else {
                        REVALIDATE
                    },
                };
                (key.clone(), asset)
            })
            .collect();
        Ok(Assets {
            files,
            not_found: config.not_found,
            worker_first: config.run_worker_first.clone(),
        })
    }

    /// Files indexed.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the directory is empty.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The response for `request` if the files answer it; `None` sends it to the guest.
    pub fn respond(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
    ) -> Option<http::Response<WasiBody>> {
        if (method != Method::GET && method != Method::HEAD)
            || self.worker_first.matches(uri.path())
        {
            return None;
        }
        let path = match path::decode(uri.path()) {
            Ok(Some(path)) => path,
            Ok(None) => return None,
            Err(refused) => {
                tracing::warn!(path = uri.path(), ?refused, "asset path refused");
                return Some(crate::responses::text(StatusCode::BAD_REQUEST, "bad path"));
            }
        };
        if let Some(asset) = self.files.get(&path) {
            return Some(respond_with(asset, StatusCode::OK, method, headers));
        }
        if path.ends_with('/') {
            if let Some(asset) = self.files.get(&format!("{path}index.html")) {
                return Some(respond_with(asset, StatusCode::OK, method, headers));
            }
        } else {
            if let Some(asset) = self.files.get(&format!("{path}.html")) {
                return Some(respond_with(asset, StatusCode::OK, method, headers));
            }
            if self.files.contains_key(&format!("{path}/index.html")) {
                let location = match uri.query() {
                    Some(query) => format!("{}/?{query}", uri.path()),
                    None => format!("{}/", uri.path()),
                };
                let mut response = crate::responses::text(StatusCode::TEMPORARY_REDIRECT, "");
                if let Ok(location) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                return Some(response);
            }
        }
        if !is_navigation(headers) {
            return None;
        }
        match self.not_found {
            NotFoundHandling::None => None,
            NotFoundHandling::SinglePageApplication => self
                .files
                .get("/index.html")
                .map(|asset| respond_with(asset, StatusCode::OK, method, headers)),
            NotFoundHandling::NotFoundPage => {
                let mut dir = path.as_str();
                loop {
                    dir = &dir[..dir.rfind('/')?];
                    if let Some(page) = self.files.get(&format!("{dir}/404.html")) {
                        return Some(full(page, StatusCode::NOT_FOUND, method, headers));
                    }
                }
            }
        }
    }
}

/// A browser loading a page, as opposed to a script's `fetch` or an API client.
fn is_navigation(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-mode") {
        Some(mode) => mode == "navigate",
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html")),
    }
}

/// The file's response to a GET or HEAD, honouring conditionals and `Range`.
fn respond_with(
    asset: &Asset,
    status: StatusCode,
    method: &Method,
    headers: &HeaderMap,
) -> http::Response<WasiBody> {
    let (encoding, file) = choose_encoding(asset, headers);
    let etag = file.etag.to_str().ok();
    if conditional::not_modified(headers, etag, Some(file.modified)) {
        let mut response = crate::responses::text(StatusCode::NOT_MODIFIED, "");
        response.headers_mut().remove(header::CONTENT_TYPE);
        describe(asset, file, encoding, response.headers_mut());
        return response;
    }
    let range = headers
        .get(header::RANGE)
        .filter(|_| {
            method == Method::GET && conditional::if_range_holds(headers, etag, Some(file.modified))
        })
        .and_then(|value| value.to_str().ok())
        .and_then(|value| conditional::byte_range(value, file.len));
    match range {
        None => full_of(asset, file, encoding, status, method),
        Some(Err(())) => {
            let mut response =
                crate::responses::text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", file.len)) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
        Some(Ok(range)) => {
            let content_range = format!("bytes {}-{}/{}", range.start(), range.end(), file.len);
            let mut response = body_of(file, Some(range), method);
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            describe(asset, file, encoding, response.headers_mut());
            if let Ok(value) = HeaderValue::from_str(&content_range) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
    }
}

/// The whole file (a 404 page), encoded as the client accepts, without conditionals.
fn full(
    asset: &Asset,
    status: StatusCode,
    method: &Method,
    headers: &HeaderMap,
) -> http::Response<WasiBody> {
    let (encoding, file) = choose_encoding(asset, headers);
    full_of(asset, file, encoding, status, method)
}

fn full_of(
    asset: &Asset,
    file: &File,
    encoding: Encoding,
    status: StatusCode,
    method: &Method,
) -> http::Response<WasiBody> {
    let mut response = body_of(file, None, method);
    *response.status_mut() = status;
    describe(asset, file, encoding, response.headers_mut());
    response
}

/// The headers every response about a file carries.
fn describe(asset: &Asset, file: &File, encoding: Encoding, headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_TYPE, asset.content_type.clone());
    headers.insert(header::CACHE_CONTROL, asset.cache_control.clone());
    headers.insert(header::ETAG, file.etag.clone());
    headers.insert(header::LAST_MODIFIED, file.last_modified.clone());
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if asset.brotli.is_some() || asset.gzip.is_some() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    match encoding {
        Encoding::Identity => {}
        Encoding::Brotli => {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        }
        Encoding::Gzip => {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
}

/// The precompressed sibling the client accepts with the highest weight (brotli on a tie).
fn choose_encoding<'a>(asset: &'a Asset, headers: &HeaderMap) -> (Encoding, &'a File) {
    if asset.brotli.is_none() && asset.gzip.is_none() {
        return (Encoding::Identity, &asset.identity);
    }
    let accepted = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let mut parts = item.split(';');
            let name = parts.next()?.trim().to_ascii_lowercase();
            let weight = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
            Some((name, weight))
        })
        .collect::<Vec<_>>();
    let weight = |name: &str| {
        accepted
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, w)| *w)
            .next()
            .unwrap_or(0.0)
    };
    let candidates = [
        (Encoding::Brotli, weight("br"), asset.brotli.as_ref()),
        (Encoding::Gzip, weight("gzip"), asset.gzip.as_ref()),
    ];
    let best = candidates
        .into_iter()
        .filter_map(|(encoding, w, file)| Some((encoding, w, file?)))
        .filter(|(_, w, _)| *w > 0.0)
        .fold(
            None,
            |best: Option<(Encoding, f32, &Arc<File>)>, next| match best {
                Some(b) if b.1 >= next.1 => Some(b),
                _ => Some(next),
            },
        );
    match best {
        Some((encoding, _, file)) => (encoding, file),
        None => (Encoding::Identity, &asset.identity),
    }
}

/// The file's bytes (or `range` of them) as a response body; empty for HEAD, with the
/// length that GET would carry.
fn body_of(
    file: &File,
    range: Option<RangeInclusive<u64>>,
    method: &Method,
) -> http::Response<WasiBody> {
    let (start, len) = match &range {
        Some(range) => (*range.start(), range.end() - range.start() + 1),
        None => (0, file.len),
    };
    let body: WasiBody = if method == Method::HEAD {
        crate::responses::body(Bytes::new())
    } else {
        match &file.content {
            Content::Memory(bytes) => {
                let end = usize::try_from(start + len).unwrap_or(usize::MAX);
                let start = usize::try_from(start).unwrap_or(usize::MAX);
                crate::responses::body(bytes.slice(start.min(bytes.len())..end.min(bytes.len())))
            }
            Content::Disk(path) => from_disk(path.clone(), start, len),
        }
    };
    let mut response = http::Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// Streams `len` bytes from `start` of a large file.
fn from_disk(path: std::path::PathBuf, start: u64, len: u64) -> WasiBody {
    use futures::TryStreamExt;
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let stream = futures::stream::once(async move {
        let mut file = tokio::fs::File::open(&path).await?;
        file.seek(std::io::SeekFrom::Start(start)).await?;
        Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::new(file.take(len)))
    })
    .try_flatten()
    .map_ok(http_body::Frame::data)
    .map_err(|error| {
        tracing::warn!(%error, "reading an asset from disk failed");
        BodyError::InternalError(Some(format!("asset unreadable: {error}")))
    });
    StreamBody::new(stream).boxed_unsync()
}
