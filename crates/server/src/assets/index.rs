//! Reading a tenant's asset directory into an index when the tenant loads: every file's
//! length, strong ETag (from its content) and modification time, small files' bytes, and
//! which files have precompressed `.br` / `.gz` siblings.
//!
//! The index is a snapshot, like a deploy: files added later are served after the next
//! reload or deploy. Symbolic links are followed only to files inside the directory.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::HeaderValue;
use sha2::{Digest, Sha256};

/// Files at most this long are held in memory (up to [`MEMORY_TOTAL`] per tenant); longer
/// ones are read from disk per request.
pub const MEMORY_FILE_MAX: u64 = 1 << 20;
/// Bytes of one tenant's files held in memory.
pub const MEMORY_TOTAL: u64 = 64 << 20;
/// Files in one asset directory.
pub const MAX_FILES: usize = 100_000;
/// Directory depth followed.
const MAX_DEPTH: usize = 32;

/// Why an asset directory cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum AssetsError {
    #[error("{path} is not a readable directory: {source}; create it or fix `assets`")]
    NotADirectory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds more than {MAX_FILES} files; serve big collections from a blob store")]
    TooManyFiles { path: PathBuf },
}

/// Where one file's bytes are.
#[derive(Debug)]
pub enum Content {
    Memory(Bytes),
    Disk(PathBuf),
}

/// One file as found on disk.
#[derive(Debug)]
pub struct File {
    pub content: Content,
    pub len: u64,
    /// Strong: the first 16 bytes of the content's SHA-256, hex, quoted.
    pub etag: HeaderValue,
    /// Seconds precision, as `Last-Modified` carries it.
    pub modified: SystemTime,
    pub last_modified: HeaderValue,
}

/// Every file under a directory, by its path from the directory (`/css/site.css`).
pub fn read(root: &Path) -> Result<HashMap<String, Arc<File>>, AssetsError> {
    let canonical = root
        .canonicalize()
        .and_then(|path| {
            if path.is_dir() {
                Ok(path)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "not a directory",
                ))
            }
        })
        .map_err(|source| AssetsError::NotADirectory {
            path: root.to_path_buf(),
            source,
        })?;
    let mut files = HashMap::new();
    let mut in_memory = 0u64;
    let mut pending = vec![(canonical.clone(), String::new(), 0usize)];
    while let Some((dir, prefix, depth)) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| AssetsError::Read {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| AssetsError::Read {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                tracing::warn!(path = %path.display(), "asset skipped: its name is not UTF-8");
                continue;
            };
            let key = format!("{prefix}/{name}");
            let kind = entry.file_type().map_err(|source| AssetsError::Read {
                path: path.clone(),
                source,
            })?;
            if kind.is_dir() {
                if depth < MAX_DEPTH {
                    pending.push((path, key, depth + 1));
                }
                continue;
            }
            if kind.is_symlink() {
                match path.canonicalize() {
                    Ok(target) if target.starts_with(&canonical) && target.is_file() => {}
                    Ok(target) if target.is_dir() => {
                        tracing::warn!(path = %path.display(), "asset skipped: links to directories are not followed");
                        continue;
                    }
                    _ => {
                        tracing::warn!(path = %path.display(), "asset skipped: it links outside the asset directory");
                        continue;
                    }
                }
            } else if !kind.is_file() {
                continue;
            }
            if files.len() >= MAX_FILES {
                return Err(AssetsError::TooManyFiles {
                    path: root.to_path_buf(),
                });
            }
            let file = read_file(&path, &mut in_memory).map_err(|source| AssetsError::Read {
                path: path.clone(),
                source,
            })?;
            files.insert(key, Arc::new(file));
        }
    }
    Ok(files)
}

fn read_file(path: &Path, in_memory: &mut u64) -> std::io::Result<File> {
    let metadata = std::fs::metadata(path)?;
    let len = metadata.len();
    let modified = metadata
        .modified()
        .ok()
        .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(SystemTime::UNIX_EPOCH, |since| {
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(since.as_secs())
        });
    let mut hasher = Sha256::new();
    let content = if len <= MEMORY_FILE_MAX && *in_memory + len <= MEMORY_TOTAL {
        let bytes = std::fs::read(path)?;
        hasher.update(&bytes);
        *in_memory += bytes.len() as u64;
        Content::Memory(Bytes::from(bytes))
    } else {
        let mut reader = std::fs::File::open(path)?;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = reader.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        Content::Disk(path.to_path_buf())
    };
    let digest = hasher.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let etag = HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a header value");
    let last_modified = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
        .expect("an HTTP date is a header value");
    Ok(File {
        content,
        len,
        etag,
        modified,
        last_modified,
    })
}

/// Whether a file name carries a content hash (`app.3f9a2b1c.js`, `main-BX3kd92a.css`),
/// so it can be cached for a year: a changed file gets a new name.
pub fn is_fingerprinted(name: &str) -> bool {
    let Some((stem, _extension)) = name.rsplit_once('.') else {
        return false;
    };
    stem.split(['.', '-', '_']).skip(1).any(|part| {
        (8..=64).contains(&part.len())
            && part.bytes().all(|b| b.is_ascii_alphanumeric())
            && part.bytes().any(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_are_recognised() {
        assert!(is_fingerprinted("app.3f9a2b1c.js"));
        assert!(is_fingerprinted("main-BX3kd92a.css"));
        assert!(is_fingerprinted("chunk.min.0a1b2c3d4e.js"));
        assert!(!is_fingerprinted("index.html"));
        assert!(!is_fingerprinted("jquery-3.7.1.min.js"));
        assert!(!is_fingerprinted("background-image.png"));
        assert!(!is_fingerprinted("3f9a2b1c3f9a.js"));
    }

    #[test]
    fn links_out_of_the_directory_are_not_indexed() {
        let outside = tempfile::tempdir().expect("dir");
        std::fs::write(outside.path().join("secret"), "s3cret").expect("write");
        let root = tempfile::tempdir().expect("dir");
        std::fs::write(root.path().join("a.txt"), "a").expect("write");
        std::fs::create_dir(root.path().join("sub")).expect("mkdir");
        std::fs::write(root.path().join("sub/b.txt"), "bb").expect("write");
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("leak"))
            .expect("link");
        std::os::unix::fs::symlink(root.path().join("a.txt"), root.path().join("alias.txt"))
            .expect("link");
        let files = read(root.path()).expect("index");
        let mut keys: Vec<&str> = files.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["/a.txt", "/alias.txt", "/sub/b.txt"]);
        assert_eq!(files["/sub/b.txt"].len, 2);
        assert_eq!(files["/a.txt"].etag, files["/alias.txt"].etag);
    }

    #[test]
    fn a_missing_directory_says_so() {
        let error = read(Path::new("/nonexistent/public")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/public"), "{error}");
    }
}
