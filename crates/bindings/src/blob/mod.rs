//! Object storage (R2's model) on object_store: local directories, S3-compatible servers,
//! or memory. Bodies stream through `wasi:io` streams both ways, so an object can be far
//! larger than the guest's memory.

mod upload;

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::chunked::ChunkedStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{Attribute, Attributes, GetOptions, GetRange, ObjectMeta, ObjectStore};
use outpost_config::BlobLocation;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::DynInputStream;
use wasmtime_wasi::p2::pipe::AsyncReadStream;

pub use upload::Upload;

use crate::generated::outpost::edge::blob::{
    ByteRange, Host, HostBucket, HostUpload, ListOptions, ListResult, Object, ObjectInfo,
    PutOptions,
};
use crate::{BindingsView, GuestError};

/// Bytes read from a file per blocking call when streaming an object out of a file store.
const FILE_READ_CHUNK: usize = 256 * 1024;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most custom metadata per object (names and values together), in bytes.
pub const MAX_METADATA_BYTES: usize = 2048;
/// Most entries one `list` returns.
pub const MAX_LIST_LIMIT: u32 = 1000;
/// Where a file store keeps content types and custom metadata (the file system has no
/// place for them). Guests cannot use keys under it.
const SIDECAR_PREFIX: &str = ".outpost-meta";

/// One blob binding's store.
pub struct BlobBinding {
    store: Arc<dyn ObjectStore>,
    /// A file store: attributes live in sidecar files, listings come unsorted.
    file: bool,
    /// The file store itself, to fsync what an upload wrote before acknowledging it
    /// (object_store renames the finished file into place but does not sync it).
    local: Option<Arc<LocalFileSystem>>,
}

/// What a file store's sidecar records.
#[derive(serde::Serialize, serde::Deserialize)]
struct Sidecar {
    /// The object's etag when the sidecar was written: a sidecar left from an older
    /// version of the object is ignored.
    etag: Option<String>,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
}

impl BlobBinding {
    /// Sets up the store `location` names (creating a file store's directory).
    pub fn new(location: &BlobLocation) -> Result<BlobBinding, String> {
        match location {
            BlobLocation::File(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let store = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| format!("cannot use {}: {e}", dir.display()))?;
                // object_store reads files 8 KiB per blocking call; bigger reads cut a
                // download's thread hand-offs 32-fold.
                let local = Arc::new(store);
                let store = ChunkedStore::new(local.clone(), FILE_READ_CHUNK);
                Ok(BlobBinding {
                    store: Arc::new(store),
                    file: true,
                    local: Some(local),
                })
            }
            BlobLocation::Memory => Ok(BlobBinding {
                store: Arc::new(InMemory::new()),
                file: false,
                local: None,
            }),
            BlobLocation::S3(s3) => {
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(s3.region.as_deref().unwrap_or("us-east-1"));
                match (
                    std::env::var(&s3.access_key_id_env),
                    std::env::var(&s3.secret_access_key_env),
                ) {
                    (Ok(id), Ok(secret)) => {
                        builder = builder
                            .with_access_key_id(id)
                            .with_secret_access_key(secret);
                    }
                    (id, secret) => {
                        let missing: Vec<&str> = [
                            (id.is_err(), s3.access_key_id_env.as_str()),
                            (secret.is_err(), s3.secret_access_key_env.as_str()),
                        ]
                        .into_iter()
                        .filter_map(|(missing, name)| missing.then_some(name))
                        .collect();
                        return Err(format!(
                            "the environment variable{} {} holding S3 credentials {} not set; set {} in outpost's environment",
                            if missing.len() > 1 { "s" } else { "" },
                            missing.join(" and "),
                            if missing.len() > 1 { "are" } else { "is" },
                            if missing.len() > 1 { "them" } else { "it" },
                        ));
                    }
                }
                if let Some(endpoint) = &s3.endpoint {
                    // S3-compatible servers: path-style addressing, plain HTTP if asked.
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_virtual_hosted_style_request(false)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                let store = builder.build().map_err(|e| e.to_string())?;
                let store: Arc<dyn ObjectStore> = if s3.prefix.is_empty() {
                    Arc::new(store)
                } else {
                    Arc::new(PrefixStore::new(store, s3.prefix.as_str()))
                };
                Ok(BlobBinding {
                    store,
                    file: false,
                    local: None,
                })
            }
        }
    }

    /// Makes the files at `paths` (and their directory entries) durable on a file store;
    /// nothing to do on others, whose servers acknowledge durably themselves.
    async fn sync(&self, paths: Vec<Path>) -> Result<(), GuestError> {
        let Some(local) = self.local.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || {
            for path in paths {
                let file = local.path_to_filesystem(&path).map_err(store_error)?;
                let failed = |e: std::io::Error| {
                    GuestError::Store(format!("blob: cannot sync {}: {e}", file.display()))
                };
                match std::fs::File::open(&file) {
                    Ok(handle) => handle.sync_all().map_err(failed)?,
                    // A sidecar that was removed: its directory entry still needs syncing.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(failed(e)),
                }
                if let Some(dir) = file.parent() {
                    match std::fs::File::open(dir) {
                        Ok(handle) => handle.sync_all().map_err(failed)?,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(failed(e)),
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| GuestError::Store(format!("blob: the sync task failed: {e}")))?
    }

    fn sidecar_path(key: &str) -> Path {
        Path::from(format!("{SIDECAR_PREFIX}/{key}.json"))
    }

    async fn read_sidecar(&self, key: &str, etag: Option<&str>) -> Option<Sidecar> {
        let bytes = self
            .store
            .get(&Self::sidecar_path(key))
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
        let sidecar: Sidecar = serde_json::from_slice(&bytes).ok()?;
        (sidecar.etag.as_deref() == etag).then_some(sidecar)
    }

    /// The info of the object at `meta` with `attributes`, completed from a file
    /// store's sidecar.
    async fn info(&self, key: &str, meta: &ObjectMeta, attributes: &Attributes) -> ObjectInfo {
        let mut content_type = attributes
            .get(&Attribute::ContentType)
            .map(|v| v.to_string());
        let mut metadata: Vec<(String, String)> = attributes
            .iter()
            .filter_map(|(name, value)| match name {
                Attribute::Metadata(name) => Some((name.to_string(), value.to_string())),
                _ => None,
            })
            .collect();
        if self.file
            && let Some(sidecar) = self.read_sidecar(key, meta.e_tag.as_deref()).await
        {
            content_type = sidecar.content_type;
            metadata = sidecar.metadata;
        }
        metadata.sort();
        ObjectInfo {
            key: key.to_string(),
            size: meta.size,
            etag: meta.e_tag.clone(),
            content_type,
            metadata,
            uploaded: meta.last_modified.timestamp_millis().max(0) as u64,
        }
    }

    /// Info from a listing: the file store's sidecars are not read per object (a listing
    /// carries size, etag and time, as S3's does).
    fn listed_info(meta: &ObjectMeta) -> ObjectInfo {
        ObjectInfo {
            key: meta.location.to_string(),
            size: meta.size,
            etag: meta.e_tag.clone(),
            content_type: None,
            metadata: Vec::new(),
            uploaded: meta.last_modified.timestamp_millis().max(0) as u64,
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, GuestError> {
        let path = object_path(key)?;
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.store.get_opts(&path, options).await {
            Ok(result) => Ok(Some(self.info(key, &result.meta, &result.attributes).await)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn get(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Option<GetBody>, GuestError> {
        let path = object_path(key)?;
        let range = range.map(get_range).transpose()?;
        let options = GetOptions {
            range: range.clone(),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&path, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) if range.is_some() => {
                // Most likely a range past the end; say so if it is.
                return match self.head(key).await? {
                    None => Ok(None),
                    Some(info) => Err(GuestError::InvalidArgument(format!(
                        "the range cannot be satisfied: the object is {} bytes ({e})",
                        info.size
                    ))),
                };
            }
            Err(e) => return Err(store_error(e)),
        };
        let info = self.info(key, &result.meta, &result.attributes).await;
        let served = result.range.clone();
        let bytes = result.into_stream().map_err(std::io::Error::other);
        let reader = tokio_util::io::StreamReader::new(bytes);
        Ok(Some(GetBody {
            info,
            offset: served.start,
            length: served.end - served.start,
            body: Box::new(AsyncReadStream::new(reader)),
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), GuestError> {
        let path = object_path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error(e)),
        }
        if self.file {
            match self.store.delete(&Self::sidecar_path(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
        self.sync(vec![path, Self::sidecar_path(key)]).await
    }

    async fn list(&self, options: ListOptions) -> Result<ListResult, GuestError> {
        let limit = options.limit.unwrap_or(MAX_LIST_LIMIT);
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(GuestError::InvalidArgument(format!(
                "limit {limit} is out of range; list returns 1 to {MAX_LIST_LIMIT} entries"
            )));
        }
        let limit = limit as usize;
        let prefix = options.prefix.unwrap_or_default();
        if prefix.starts_with('/') {
            return Err(GuestError::InvalidArgument(
                "the prefix may not start with `/`".into(),
            ));
        }
        // object_store lists by directory: list the prefix's directory, filter by text.
        let dir = prefix.rfind('/').map_or("", |slash| &prefix[..slash]);
        let dir = if dir.is_empty() {
            None
        } else {
            Some(object_path(dir)?)
        };
        let cursor = options.cursor.unwrap_or_default();
        let visible = |name: &str| {
            name.starts_with(prefix.as_str())
                && name > cursor.as_str()
                && !(self.file && name.starts_with(SIDECAR_PREFIX))
        };
        // Entries in key order: objects, and with a delimiter the rolled-up prefixes.
        let mut entries: Vec<(String, Option<ObjectInfo>)> = Vec::new();
        match options.delimiter.as_deref() {
            Some("/") => {
                let listing = self
                    .store
                    .list_with_delimiter(dir.as_ref())
                    .await
                    .map_err(store_error)?;
                for common in listing.common_prefixes {
                    let name = format!("{common}/");
                    if visible(&name) {
                        entries.push((name, None));
                    }
                }
                for meta in listing.objects {
                    let name = meta.location.to_string();
                    if visible(&name) {
                        entries.push((name, Some(Self::listed_info(&meta))));
                    }
                }
            }
            Some(other) => {
                return Err(GuestError::InvalidArgument(format!(
                    "delimiter `{other}` is not supported; use \"/\" or none"
                )));
            }
            None => {
                let offset = (!cursor.is_empty()).then(|| Path::from(cursor.as_str()));
                let mut listing = match &offset {
                    Some(offset) => self.store.list_with_offset(dir.as_ref(), offset),
                    None => self.store.list(dir.as_ref()),
                };
                while let Some(meta) = listing.next().await {
                    let meta = meta.map_err(store_error)?;
                    let name = meta.location.to_string();
                    if visible(&name) {
                        entries.push((name, Some(Self::listed_info(&meta))));
                    }
                    // Sorted backends can stop early; a directory listing comes unsorted.
                    if !self.file && entries.len() > limit {
                        break;
                    }
                }
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let truncated = entries.len() > limit;
        entries.truncate(limit);
        let cursor = if truncated {
            entries.last().map(|(name, _)| name.clone())
        } else {
            None
        };
        let mut result = ListResult {
            objects: Vec::new(),
            prefixes: Vec::new(),
            truncated,
            cursor,
        };
        for (name, info) in entries {
            match info {
                Some(info) => result.objects.push(info),
                None => result.prefixes.push(name),
            }
        }
        Ok(result)
    }
}

/// A download: what it is and its body.
struct GetBody {
    info: ObjectInfo,
    offset: u64,
    length: u64,
    body: DynInputStream,
}

/// Checks a guest's key and makes it a store path.
fn object_path(key: &str) -> Result<Path, GuestError> {
    let invalid = |why: &str| GuestError::InvalidArgument(format!("the key `{key}` {why}"));
    if key.is_empty() {
        return Err(invalid("is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid(&format!("is over {MAX_KEY_BYTES} bytes")));
    }
    if key.starts_with('/') {
        return Err(invalid("starts with `/`"));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(invalid("has an empty segment (`//` or a trailing `/`)")),
            "." | ".." => return Err(invalid("has a `.` or `..` segment")),
            _ => {}
        }
    }
    if key == SIDECAR_PREFIX || key.starts_with(&format!("{SIDECAR_PREFIX}/")) {
        return Err(invalid(&format!(
            "is under `{SIDECAR_PREFIX}/`, which outpost reserves"
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid("has a control character"));
    }
    Path::parse(key).map_err(|e| invalid(&format!("is not a valid object path: {e}")))
}

fn get_range(range: ByteRange) -> Result<GetRange, GuestError> {
    let empty = || GuestError::InvalidArgument("the range is empty".into());
    Ok(match range {
        ByteRange::Offset(offset) => GetRange::Offset(offset),
        ByteRange::Bounded((_, 0)) | ByteRange::Suffix(0) => return Err(empty()),
        ByteRange::Bounded((offset, length)) => {
            GetRange::Bounded(offset..offset.saturating_add(length))
        }
        ByteRange::Suffix(length) => GetRange::Suffix(length),
    })
}

fn store_error(error: object_store::Error) -> GuestError {
    GuestError::Store(format!("blob: {error}"))
}

fn attributes(options: &PutOptions) -> Result<Attributes, GuestError> {
    let mut total = 0;
    let mut attributes = Attributes::new();
    for (name, value) in &options.metadata {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !token {
            return Err(GuestError::InvalidArgument(format!(
                "metadata name `{name}` must be letters, digits, `-`, `_` or `.`"
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(GuestError::InvalidArgument(format!(
                "metadata `{name}` has a control character in its value"
            )));
        }
        total += name.len() + value.len();
        attributes.insert(
            Attribute::Metadata(name.to_lowercase().into()),
            value.clone().into(),
        );
    }
    if total > MAX_METADATA_BYTES {
        return Err(GuestError::InvalidArgument(format!(
            "custom metadata is {total} bytes; it is limited to {MAX_METADATA_BYTES} bytes"
        )));
    }
    if let Some(content_type) = &options.content_type {
        if content_type.chars().any(char::is_control) {
            return Err(GuestError::InvalidArgument(
                "the content type has a control character".into(),
            ));
        }
        attributes.insert(Attribute::ContentType, content_type.clone().into());
    }
    Ok(attributes)
}

/// An open blob binding, as the guest's `bucket` resource.
pub struct BucketHandle {
    binding: Arc<BlobBinding>,
}

impl BindingsView<'_> {
    fn bucket(&self, handle: &Resource<BucketHandle>) -> wasmtime::Result<Arc<BlobBinding>> {
        Ok(self.table.get(handle)?.binding.clone())
    }
}

type GuestResult<T> = wasmtime::Result<Result<T, GuestError>>;

impl HostBucket for BindingsView<'_> {
    async fn open(&mut self, name: String) -> GuestResult<Resource<BucketHandle>> {
        let bindings = self.bindings;
        let Some((_, binding)) = bindings.blob.iter().find(|(declared, _)| *declared == name)
        else {
            return Ok(Err(bindings.undeclared("blob", &name)));
        };
        let handle = BucketHandle {
            binding: binding.clone(),
        };
        Ok(Ok(self.table.push(handle)?))
    }

    async fn head(
        &mut self,
        this: Resource<BucketHandle>,
        key: String,
    ) -> GuestResult<Option<ObjectInfo>> {
        let _timer = self.timed("blob", "head");
        let bucket = self.bucket(&this)?;
        Ok(bucket.head(&key).await)
    }

    async fn get(
        &mut self,
        this: Resource<BucketHandle>,
        key: String,
        range: Option<ByteRange>,
    ) -> GuestResult<Option<Object>> {
        let _timer = self.timed("blob", "get");
        let bucket = self.bucket(&this)?;
        let found = match bucket.get(&key, range).await {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        let Some(found) = found else {
            return Ok(Ok(None));
        };
        let body = self.table.push(found.body)?;
        Ok(Ok(Some(Object {
            info: found.info,
            range_offset: found.offset,
            range_length: found.length,
            body,
        })))
    }

    async fn put(
        &mut self,
        this: Resource<BucketHandle>,
        key: String,
        options: PutOptions,
    ) -> GuestResult<Resource<Upload>> {
        let bucket = self.bucket(&this)?;
        let prepared = object_path(&key).and_then(|path| Ok((path, attributes(&options)?)));
        let (path, attributes) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err(e)),
        };
        let sidecar = bucket.file.then(|| Sidecar {
            etag: None,
            content_type: options.content_type.clone(),
            metadata: options.metadata.clone(),
        });
        let upload = Upload::start(bucket, key, path, attributes, sidecar);
        Ok(Ok(self.table.push(upload)?))
    }

    async fn delete(&mut self, this: Resource<BucketHandle>, key: String) -> GuestResult<()> {
        let _timer = self.timed("blob", "delete");
        let bucket = self.bucket(&this)?;
        Ok(bucket.delete(&key).await)
    }

    async fn list(
        &mut self,
        this: Resource<BucketHandle>,
        options: ListOptions,
    ) -> GuestResult<ListResult> {
        let _timer = self.timed("blob", "list");
        let bucket = self.bucket(&this)?;
        Ok(bucket.list(options).await)
    }

    async fn drop(&mut self, this: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl HostUpload for BindingsView<'_> {
    async fn body(
        &mut self,
        this: Resource<Upload>,
    ) -> GuestResult<Resource<wasmtime_wasi::p2::DynOutputStream>> {
        let upload = self.table.get_mut(&this)?;
        let Some(stream) = upload.take_body() else {
            return Ok(Err(GuestError::InvalidArgument(
                "the upload's body was already taken".into(),
            )));
        };
        let stream: wasmtime_wasi::p2::DynOutputStream = Box::new(stream);
        Ok(Ok(self.table.push_child(stream, &this)?))
    }

    async fn finish(&mut self, this: Resource<Upload>) -> GuestResult<ObjectInfo> {
        let _timer = self.timed("blob", "put");
        if self.table.iter_children(&this)?.next().is_some() {
            return Ok(Err(GuestError::InvalidArgument(
                "drop the upload's body stream before calling finish".into(),
            )));
        }
        let upload = self.table.delete(this)?;
        Ok(upload.finish().await)
    }

    async fn drop(&mut self, this: Resource<Upload>) -> wasmtime::Result<()> {
        // Dropping the body stream with it, if the guest still holds it, is the guest's
        // error; the upload is discarded either way.
        self.table.delete(this)?;
        Ok(())
    }
}

impl Host for BindingsView<'_> {}
