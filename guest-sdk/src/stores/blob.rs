//! Object storage (R2's model). Bodies stream both ways, so objects can be far larger
//! than the guest's memory: pass a request's body to [`Bucket::put_stream`] and an
//! object's to [`Response::stream`](crate::Response::stream) via [`Object::into_body`].

use std::rc::Rc;

use serde::Serialize;
use wstd::http::Body;
use wstd::io::{AsyncInputStream, AsyncOutputStream};

use super::store_error;
use super::wit::outpost::edge::blob as host;
use crate::request::BodyStream;
use crate::{Error, Result};

/// A blob bucket (`env.blob("NAME")`).
#[derive(Clone)]
pub struct Bucket {
    name: Rc<str>,
    bucket: Rc<host::Bucket>,
}

/// What is known about an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its entity tag.
    pub etag: Option<String>,
    /// The content type given at upload.
    pub content_type: Option<String>,
    /// Custom metadata given at upload.
    pub metadata: Vec<(String, String)>,
    /// Upload time, milliseconds since the Unix epoch.
    pub uploaded: u64,
}

impl From<host::ObjectInfo> for ObjectInfo {
    fn from(info: host::ObjectInfo) -> ObjectInfo {
        ObjectInfo {
            key: info.key,
            size: info.size,
            etag: info.etag,
            content_type: info.content_type,
            metadata: info.metadata,
            uploaded: info.uploaded,
        }
    }
}

/// Part of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// From this offset to the end.
    From(u64),
    /// `length` bytes from `offset`.
    Bounded {
        /// First byte.
        offset: u64,
        /// How many bytes.
        length: u64,
    },
    /// The last this many bytes.
    Suffix(u64),
}

impl Range {
    /// Parses an HTTP `Range` header holding one `bytes=` range.
    pub fn from_header(header: &str) -> Option<Range> {
        let spec = header.trim().strip_prefix("bytes=")?;
        if spec.contains(',') {
            return None;
        }
        let (start, end) = spec.split_once('-')?;
        match (start.trim(), end.trim()) {
            ("", suffix) => suffix.parse().ok().map(Range::Suffix),
            (start, "") => start.parse().ok().map(Range::From),
            (start, end) => {
                let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
                // `then`, not `then_some`: the length is computed only for a valid range.
                (end >= start).then(|| Range::Bounded {
                    offset: start,
                    length: end - start + 1,
                })
            }
        }
    }
}

/// An object and its body (or the part of it asked for).
pub struct Object {
    /// What it is.
    pub info: ObjectInfo,
    /// Where the body starts within the object.
    pub range_offset: u64,
    /// How many bytes the body holds.
    pub range_length: u64,
    body: wstd::__internal::wasip2::io::streams::InputStream,
}

impl Object {
    /// The body, to stream into a response without holding it in memory.
    pub fn into_body(self) -> Body {
        Body::from_try_stream(AsyncInputStream::new(self.body).into_stream_of(64 * 1024))
    }

    /// The whole body read into memory.
    pub async fn bytes(self) -> Result<Vec<u8>> {
        let stream = AsyncInputStream::new(self.body);
        let mut out = Vec::with_capacity(self.range_length.min(1 << 20) as usize);
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| Error::internal(format!("reading `{}`: {e}", self.info.key)))?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// The `Content-Range` header value for this part: `bytes 0-99/1000`.
    pub fn content_range(&self) -> String {
        let end = (self.range_offset + self.range_length).saturating_sub(1);
        format!("bytes {}-{end}/{}", self.range_offset, self.info.size)
    }
}

/// Options of an upload.
#[derive(Debug, Clone, Default)]
pub struct Put {
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
}

impl Put {
    /// The object's content type.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Put {
        self.content_type = Some(content_type.into());
        self
    }

    /// A custom metadata entry (names: letters, digits, `-`, `_`, `.`; 2 KiB in all).
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> Put {
        self.metadata.push((name.into(), value.into()));
        self
    }
}

/// Options of a listing.
#[derive(Debug, Clone, Default)]
pub struct List {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// `Some("/")` rolls keys up into [`Listing::prefixes`] at the next `/`.
    pub delimiter: Option<String>,
    /// The previous page's cursor.
    pub cursor: Option<String>,
    /// At most this many entries (1 to 1000, default 1000).
    pub limit: Option<u32>,
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// Objects in key order.
    pub objects: Vec<ObjectInfo>,
    /// With a delimiter: the rolled-up prefixes, each ending in it.
    pub prefixes: Vec<String>,
    /// More entries follow.
    pub truncated: bool,
    /// Pass as [`List::cursor`] for the next page.
    pub cursor: Option<String>,
}

impl Bucket {
    pub(crate) fn open(name: &str) -> Result<Bucket> {
        let bucket = host::Bucket::open(name)
            .map_err(|e| store_error(format_args!("opening blob `{name}`"), e))?;
        Ok(Bucket {
            name: name.into(),
            bucket: Rc::new(bucket),
        })
    }

    fn fail(&self, op: &str, key: &str) -> impl FnOnce(super::HostError) -> Error {
        let what = format!("blob `{}` {op} `{key}`", self.name);
        move |e| store_error(format_args!("{what}"), e)
    }

    /// What is known about `key`, without its body.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let info = self.bucket.head(key).map_err(self.fail("head", key))?;
        Ok(info.map(ObjectInfo::from))
    }

    /// The object at `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Object>> {
        self.get_range(key, None).await
    }

    /// The object at `key`, or part of it. A range past the end fails with
    /// [`StoreError::RangeNotSatisfiable`](crate::StoreError::RangeNotSatisfiable), which
    /// answers 416 if returned.
    pub async fn get_range(&self, key: &str, range: Option<Range>) -> Result<Option<Object>> {
        let range = range.map(|r| match r {
            Range::From(offset) => host::ByteRange::Offset(offset),
            Range::Bounded { offset, length } => host::ByteRange::Bounded((offset, length)),
            Range::Suffix(length) => host::ByteRange::Suffix(length),
        });
        let found = self.bucket.get(key, range).map_err(self.fail("get", key))?;
        Ok(found.map(|o| Object {
            info: o.info.into(),
            range_offset: o.range_offset,
            range_length: o.range_length,
            body: o.body,
        }))
    }

    /// Stores `bytes` at `key`.
    pub async fn put(
        &self,
        key: &str,
        bytes: impl AsRef<[u8]>,
        options: Put,
    ) -> Result<ObjectInfo> {
        self.upload(key, options, Source::Bytes(bytes.as_ref()))
            .await
    }

    /// Stores a body read chunk by chunk (say, a request's) at `key`: memory use stays
    /// small whatever its size.
    pub async fn put_stream(
        &self,
        key: &str,
        body: BodyStream,
        options: Put,
    ) -> Result<ObjectInfo> {
        self.upload(key, options, Source::Stream(body)).await
    }

    async fn upload(&self, key: &str, options: Put, mut source: Source<'_>) -> Result<ObjectInfo> {
        let upload = self
            .bucket
            .put(
                key,
                &host::PutOptions {
                    content_type: options.content_type,
                    metadata: options.metadata,
                },
            )
            .map_err(self.fail("put", key))?;
        let stream = upload.body().map_err(self.fail("put", key))?;
        let out = AsyncOutputStream::new(stream);
        let mut store_failed = false;
        let mut source_error = None;
        loop {
            match source.next().await {
                Ok(Some(chunk)) => {
                    if out.write_all(chunk.as_ref()).await.is_err() {
                        store_failed = true;
                        break;
                    }
                }
                Ok(None) => {
                    store_failed = out.flush().await.is_err();
                    break;
                }
                Err(e) => {
                    source_error = Some(e);
                    break;
                }
            }
        }
        drop(out);
        if let Some(e) = source_error {
            // Dropping the unfinished upload discards it: no truncated object appears.
            drop(upload);
            return Err(e);
        }
        // After a failed write, `finish` reports the store's reason.
        let finished = host::Upload::finish(upload).map_err(self.fail("put", key));
        match finished {
            Ok(info) if !store_failed => Ok(info.into()),
            Ok(_) => Err(Error::internal(format!(
                "blob `{}` put `{key}`: the upload failed",
                self.name
            ))),
            Err(e) => Err(e),
        }
    }

    /// Removes `key` (absent is fine).
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.bucket.delete(key).map_err(self.fail("delete", key))
    }

    /// A page of objects in key order.
    pub async fn list(&self, options: List) -> Result<Listing> {
        let prefix = options.prefix.clone().unwrap_or_default();
        let found = self
            .bucket
            .list(&host::ListOptions {
                prefix: options.prefix,
                delimiter: options.delimiter,
                cursor: options.cursor,
                limit: options.limit,
            })
            .map_err(self.fail("list", &prefix))?;
        Ok(Listing {
            objects: found.objects.into_iter().map(ObjectInfo::from).collect(),
            prefixes: found.prefixes,
            truncated: found.truncated,
            cursor: found.cursor,
        })
    }
}

/// Where an upload's bytes come from.
enum Source<'a> {
    Bytes(&'a [u8]),
    Stream(BodyStream),
}

impl Source<'_> {
    async fn next(&mut self) -> Result<Option<bytes::Bytes>> {
        const CHUNK: usize = 64 * 1024;
        match self {
            Source::Bytes([]) => Ok(None),
            Source::Bytes(rest) => {
                let (chunk, tail) = rest.split_at(rest.len().min(CHUNK));
                *rest = tail;
                Ok(Some(bytes::Bytes::copy_from_slice(chunk)))
            }
            Source::Stream(body) => body.chunk().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers_parse_as_http_means_them() {
        assert_eq!(
            Range::from_header("bytes=0-99"),
            Some(Range::Bounded {
                offset: 0,
                length: 100
            })
        );
        assert_eq!(Range::from_header("bytes=100-"), Some(Range::From(100)));
        assert_eq!(Range::from_header("bytes=-20"), Some(Range::Suffix(20)));
        assert_eq!(
            Range::from_header(" bytes=5-5 "),
            Some(Range::Bounded {
                offset: 5,
                length: 1
            })
        );
    }

    #[test]
    fn ranges_outpost_cannot_serve_are_refused() {
        for header in [
            "bytes=9-3",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
        ] {
            assert_eq!(Range::from_header(header), None, "{header}");
        }
    }
}
