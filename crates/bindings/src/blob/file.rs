//! What a directory store needs beyond object_store: sidecar files for content types
//! and custom metadata (the file system has no place for them), fsync of what an upload
//! or delete touched before it is acknowledged (object_store renames the finished file
//! into place but does not sync it), and larger reads.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::chunked::ChunkedStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use super::BlobSetupError;
use crate::{EdgeError, EdgeResult};

/// Bytes read from a file per blocking call when streaming an object out.
const FILE_READ_CHUNK: usize = 256 * 1024;
/// Where sidecars live. Guests cannot use keys under it.
pub(super) const SIDECAR_PREFIX: &str = ".outpost-meta";

/// A directory store's own parts.
pub(super) struct FileStore {
    local: Arc<LocalFileSystem>,
}

/// What a sidecar records.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Sidecar {
    /// The object's etag when the sidecar was written: a sidecar left from an older
    /// version of the object is ignored.
    pub(super) etag: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) metadata: Vec<(String, String)>,
}

impl FileStore {
    /// The store for `dir` (created if missing), and its file-specific parts.
    pub(super) fn open(dir: &PathBuf) -> Result<(Arc<dyn ObjectStore>, FileStore), BlobSetupError> {
        let failed = |source| BlobSetupError::Directory {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(failed)?;
        let local =
            LocalFileSystem::new_with_prefix(dir).map_err(|e| failed(std::io::Error::other(e)))?;
        let local = Arc::new(local);
        // object_store reads files 8 KiB per blocking call; bigger reads cut a download's
        // thread hand-offs 32-fold.
        let store = ChunkedStore::new(local.clone(), FILE_READ_CHUNK);
        Ok((Arc::new(store), FileStore { local }))
    }

    pub(super) fn sidecar_path(key: &str) -> Path {
        Path::from(format!("{SIDECAR_PREFIX}/{key}.json"))
    }

    /// Makes the files at `paths` (and their directory entries) durable.
    pub(super) async fn sync(&self, paths: Vec<Path>) -> EdgeResult<()> {
        let local = self.local.clone();
        tokio::task::spawn_blocking(move || {
            for path in paths {
                let file = local
                    .path_to_filesystem(&path)
                    .map_err(|e| EdgeError::store(format!("blob: {e}")))?;
                let failed = |e: std::io::Error| {
                    EdgeError::store(format!("blob: cannot sync {}: {e}", file.display()))
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
        .map_err(|e| EdgeError::store(format!("blob: the sync task failed: {e}")))?
    }
}
