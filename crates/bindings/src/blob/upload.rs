//! A streaming upload: the guest writes to a `wasi:io` output stream, a background task
//! feeds object_store's multipart writer, and `finish` commits.
//!
//! The stream hands chunks to the task through a small bounded channel, so the guest is
//! paced by the store's speed and the host holds at most a few chunks per upload (plus
//! the writer's part buffer), whatever the object's size.

use std::sync::Arc;

use bytes::Bytes;
use object_store::Attributes;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use super::BlobBucket;
use super::bucket::store_error;
use super::file::{FileStore, Sidecar};
use crate::generated::outpost::edge::blob::ObjectInfo;
use crate::{EdgeError, EdgeResult};

/// Most bytes one `write` may carry (what `check-write` grants).
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the guest and the store.
const QUEUE: usize = 4;
/// The multipart writer's part size (S3's minimum part is 5 MiB).
const PART_BYTES: usize = 8 * 1024 * 1024;

/// An object being written (the guest's `upload` resource).
pub struct Upload {
    body: Option<UploadStream>,
    commit: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<EdgeResult<ObjectInfo>>,
}

impl Upload {
    pub(super) fn start(
        bucket: Arc<BlobBucket>,
        key: String,
        path: Path,
        attributes: Attributes,
        sidecar: Option<Sidecar>,
    ) -> Upload {
        let (chunks, mut received) = mpsc::channel::<Bytes>(QUEUE);
        let (commit, committed) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let store = bucket.store.clone();
            let mut writer = BufWriter::with_capacity(store, path.clone(), PART_BYTES)
                .with_attributes(if bucket.file.is_some() {
                    Attributes::new()
                } else {
                    attributes
                });
            while let Some(chunk) = received.recv().await {
                if let Err(e) = writer.put(chunk).await {
                    let _ = writer.abort().await;
                    return Err(store_error(e));
                }
            }
            if committed.await.is_err() {
                // Dropped without `finish`: nothing becomes visible.
                let _ = writer.abort().await;
                return Err(EdgeError::store("the upload was discarded"));
            }
            if let Err(e) = writer.shutdown().await {
                return Err(EdgeError::store(format!(
                    "blob: storing `{key}` failed: {e}"
                )));
            }
            let meta = bucket.store.head(&path).await.map_err(store_error)?;
            if let Some(mut sidecar) = sidecar {
                sidecar.etag = meta.e_tag.clone();
                let sidecar_path = FileStore::sidecar_path(&key);
                if sidecar.content_type.is_none() && sidecar.metadata.is_empty() {
                    match bucket.store.delete(&sidecar_path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(store_error(e)),
                    }
                } else {
                    let json = serde_json::to_vec(&sidecar)
                        .map_err(|e| EdgeError::store(format!("blob: {e}")))?;
                    bucket
                        .store
                        .put(&sidecar_path, json.into())
                        .await
                        .map_err(store_error)?;
                }
            }
            if let Some(file) = &bucket.file {
                file.sync(vec![path, FileStore::sidecar_path(&key)]).await?;
            }
            Ok(bucket.info(&key, &meta, &Attributes::new()).await)
        });
        Upload {
            body: Some(UploadStream {
                chunks,
                permit: None,
            }),
            commit: Some(commit),
            task,
        }
    }

    /// The body stream, the first time it is asked for.
    pub(super) fn take_body(&mut self) -> Option<UploadStream> {
        self.body.take()
    }

    /// Ends the body (the guest has dropped its stream) and stores the object.
    pub(super) async fn finish(mut self) -> EdgeResult<ObjectInfo> {
        // An untaken body is an empty object.
        self.body = None;
        if let Some(commit) = self.commit.take() {
            let _ = commit.send(());
        }
        match (&mut self.task).await {
            Ok(outcome) => outcome,
            Err(e) => Err(EdgeError::store(format!(
                "blob: the upload task failed: {e}"
            ))),
        }
    }
}

/// The guest's end of an upload.
pub(super) struct UploadStream {
    chunks: mpsc::Sender<Bytes>,
    /// Room for one chunk, reserved by `check-write` or `ready`.
    permit: Option<mpsc::OwnedPermit<Bytes>>,
}

fn failed() -> StreamError {
    StreamError::LastOperationFailed(wasmtime::format_err!(
        "the upload failed; `finish` says why"
    ))
}

#[async_trait::async_trait]
impl Pollable for UploadStream {
    async fn ready(&mut self) {
        if self.permit.is_none()
            && let Ok(permit) = self.chunks.clone().reserve_owned().await
        {
            self.permit = Some(permit);
        }
    }
}

#[async_trait::async_trait]
impl OutputStream for UploadStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if bytes.len() > CHUNK {
            return Err(StreamError::trap("wrote more than check-write allowed"));
        }
        let permit = match self.permit.take() {
            Some(permit) => permit,
            None => match self.chunks.clone().try_reserve_owned() {
                Ok(permit) => permit,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(StreamError::trap("wrote more than check-write allowed"));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(failed()),
            },
        };
        permit.send(bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Written chunks are already queued for the store; `finish` waits for them.
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.permit.is_some() {
            return Ok(CHUNK);
        }
        match self.chunks.clone().try_reserve_owned() {
            Ok(permit) => {
                self.permit = Some(permit);
                Ok(CHUNK)
            }
            Err(mpsc::error::TrySendError::Full(_)) => Ok(0),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(failed()),
        }
    }
}
