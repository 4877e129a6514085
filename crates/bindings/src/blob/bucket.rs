//! One blob binding's store: head, ranged get, delete and list on object_store, with a
//! directory store's sidecars and fsync (`file.rs`) where the binding is a directory.

use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{Attribute, Attributes, GetOptions, ObjectMeta, ObjectStore};
use outpost_config::BlobLocation;
use wasmtime_wasi::p2::DynInputStream;
use wasmtime_wasi::p2::pipe::AsyncReadStream;

use super::MAX_LIST_LIMIT;
use super::file::{FileStore, SIDECAR_PREFIX, Sidecar};
use super::keys::{get_range, object_path};
use crate::generated::outpost::edge::blob::{ByteRange, ListOptions, ListResult, ObjectInfo};
use crate::{EdgeError, EdgeResult, ErrorCode};

/// Why a blob binding's store cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum BlobSetupError {
    /// A directory store's directory cannot be created or used.
    #[error("cannot use {}: {source}", path.display())]
    Directory {
        /// The directory the binding names.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The environment variables holding S3 credentials are not set.
    #[error("{}", credentials_message(missing))]
    Credentials {
        /// The variables' names.
        missing: Vec<String>,
    },
    /// object_store refused the S3 settings.
    #[error("{0}")]
    S3(object_store::Error),
}

fn credentials_message(missing: &[String]) -> String {
    let many = missing.len() > 1;
    format!(
        "the environment variable{} {} holding S3 credentials {} not set; set {} in outpost's environment",
        if many { "s" } else { "" },
        missing.join(" and "),
        if many { "are" } else { "is" },
        if many { "them" } else { "it" },
    )
}

/// One blob binding's store.
pub struct BlobBucket {
    pub(super) store: Arc<dyn ObjectStore>,
    /// A directory store's own parts; `None` for S3 and memory.
    pub(super) file: Option<FileStore>,
}

pub(super) fn store_error(error: object_store::Error) -> EdgeError {
    EdgeError::store(format!("blob: {error}"))
}

/// A download: what it is and its body.
pub(super) struct GetBody {
    pub(super) info: ObjectInfo,
    pub(super) offset: u64,
    pub(super) length: u64,
    pub(super) body: DynInputStream,
}

impl BlobBucket {
    /// Sets up the store `location` names (creating a directory store's directory).
    pub fn open(location: &BlobLocation) -> Result<BlobBucket, BlobSetupError> {
        Ok(match location {
            BlobLocation::File(dir) => {
                let (store, file) = FileStore::open(dir)?;
                BlobBucket {
                    store,
                    file: Some(file),
                }
            }
            BlobLocation::Memory => BlobBucket {
                store: Arc::new(InMemory::new()),
                file: None,
            },
            BlobLocation::S3(s3) => BlobBucket {
                store: super::s3::open(s3)?,
                file: None,
            },
        })
    }

    async fn read_sidecar(&self, key: &str, etag: Option<&str>) -> Option<Sidecar> {
        let bytes = self
            .store
            .get(&FileStore::sidecar_path(key))
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
    pub(super) async fn info(
        &self,
        key: &str,
        meta: &ObjectMeta,
        attributes: &Attributes,
    ) -> ObjectInfo {
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
        if self.file.is_some()
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

    pub(super) async fn head(&self, key: &str) -> EdgeResult<Option<ObjectInfo>> {
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

    pub(super) async fn get(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> EdgeResult<Option<GetBody>> {
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
                    Some(info) => {
                        tracing::debug!(key, size = info.size, error = %e, "blob range not satisfiable");
                        Err(ErrorCode::RangeNotSatisfiable(info.size).into())
                    }
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

    pub(super) async fn delete(&self, key: &str) -> EdgeResult<()> {
        let path = object_path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error(e)),
        }
        if let Some(file) = &self.file {
            let sidecar = FileStore::sidecar_path(key);
            match self.store.delete(&sidecar).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
            file.sync(vec![path, sidecar]).await?;
        }
        Ok(())
    }

    pub(super) async fn list(&self, options: ListOptions) -> EdgeResult<ListResult> {
        let limit = options.limit.unwrap_or(MAX_LIST_LIMIT);
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(EdgeError::invalid(format!(
                "limit {limit} is out of range; list returns 1 to {MAX_LIST_LIMIT} entries"
            )));
        }
        let limit = limit as usize;
        let prefix = options.prefix.unwrap_or_default();
        if prefix.starts_with('/') {
            return Err(EdgeError::invalid("the prefix may not start with `/`"));
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
                && !(self.file.is_some() && name.starts_with(SIDECAR_PREFIX))
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
                return Err(EdgeError::invalid(format!(
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
                    if self.file.is_none() && entries.len() > limit {
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
