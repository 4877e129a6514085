//! The disk tier of a tenant's cache (`cache.disk`): every stored key is also written to a
//! file under `data_dir/cache/<tenant>/`, so a restart (or an eviction from memory) finds
//! it again. Bounded in bytes, evicting the least recently used files; purges reach it too.
//!
//! A file holds one key's variants: `OPC1`, the key, then each variant's metadata (JSON)
//! and body. Files are written to a temporary name and renamed, so a crash leaves whole
//! files or none; they are not fsynced (a cache may lose entries, never serve torn ones).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::entry::{Entry, Saved};
use crate::purge::Purge;

const MAGIC: &[u8; 4] = b"OPC1";
/// Largest metadata block read back (headers and tags of one variant).
const MAX_META: u32 = 1 << 20;

/// What the index keeps of a file: enough to bound the tier and to purge it.
struct Indexed {
    bytes: u64,
    used: u64,
    host: String,
    paths: Vec<String>,
    tags: Vec<String>,
}

struct Index {
    files: HashMap<String, Indexed>,
    total: u64,
    clock: u64,
}

/// One tenant's cache files.
pub struct DiskTier {
    dir: PathBuf,
    capacity: u64,
    index: Mutex<Index>,
    /// Bumped by every removal, so a write that started before it does not bring an
    /// entry back.
    generation: AtomicU64,
}

impl DiskTier {
    /// Opens (creating) `dir` and indexes the files in it.
    pub fn open(dir: &Path, capacity: u64) -> std::io::Result<Arc<DiskTier>> {
        std::fs::create_dir_all(dir)?;
        let mut index = Index {
            files: HashMap::new(),
            total: 0,
            clock: 0,
        };
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            match read_file(&path, false) {
                Some((_, variants)) if !variants.is_empty() => {
                    let bytes = entry.metadata().map_or(0, |m| m.len());
                    index.total += bytes;
                    index.files.insert(name, indexed(bytes, 0, &variants));
                }
                _ => {
                    tracing::warn!(path = %path.display(), "unreadable cache file removed");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        tracing::debug!(dir = %dir.display(), files = index.files.len(), bytes = index.total, "cache disk tier opened");
        let tier = Arc::new(DiskTier {
            dir: dir.to_path_buf(),
            capacity,
            index: Mutex::new(index),
            generation: AtomicU64::new(0),
        });
        tier.evict_to_fit(&mut tier.lock());
        Ok(tier)
    }

    /// The generation a write should carry.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Writes `key`'s variants, unless something was removed since `generation`.
    pub fn write(&self, key: &str, variants: &[Arc<Entry>], generation: u64) {
        let name = file_name(key);
        let path = self.dir.join(&name);
        let temporary = self
            .dir
            .join(format!("{name}.{}.tmp", rand::random::<u32>()));
        let result = (|| -> std::io::Result<u64> {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&temporary)?);
            file.write_all(MAGIC)?;
            file.write_all(&(key.len() as u32).to_le_bytes())?;
            file.write_all(key.as_bytes())?;
            file.write_all(&(variants.len() as u32).to_le_bytes())?;
            for entry in variants {
                let meta = serde_json::to_vec(&entry.saved()).map_err(std::io::Error::other)?;
                file.write_all(&(meta.len() as u32).to_le_bytes())?;
                file.write_all(&meta)?;
                file.write_all(&entry.body)?;
            }
            let file = file.into_inner().map_err(|e| e.into_error())?;
            Ok(file.metadata()?.len())
        })();
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(%error, dir = %self.dir.display(), "cache entry not written to disk");
                let _ = std::fs::remove_file(&temporary);
                return;
            }
        };
        let mut index = self.lock();
        if self.generation() != generation || bytes > self.capacity {
            let _ = std::fs::remove_file(&temporary);
            return;
        }
        if let Err(error) = std::fs::rename(&temporary, &path) {
            tracing::warn!(%error, "cache entry not written to disk");
            let _ = std::fs::remove_file(&temporary);
            return;
        }
        index.clock += 1;
        let used = index.clock;
        let saved: Vec<Saved> = variants.iter().map(|e| e.saved()).collect();
        if let Some(old) = index.files.insert(name, indexed(bytes, used, &saved)) {
            index.total -= old.bytes;
        }
        index.total += bytes;
        self.evict_to_fit(&mut index);
    }

    /// `key`'s variants, if a file holds them.
    pub fn read(&self, key: &str) -> Option<Vec<Entry>> {
        let name = file_name(key);
        {
            let mut index = self.lock();
            index.clock += 1;
            let used = index.clock;
            index.files.get_mut(&name)?.used = used;
        }
        let (stored_key, variants) = read_file(&self.dir.join(&name), true)?;
        if stored_key != key {
            return None;
        }
        Some(
            variants
                .into_iter()
                .filter_map(|(saved, body)| Entry::restored(saved, body))
                .collect(),
        )
    }

    /// Removes `key`'s file.
    pub fn remove(&self, key: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let name = file_name(key);
        let mut index = self.lock();
        if let Some(old) = index.files.remove(&name) {
            index.total -= old.bytes;
            let _ = std::fs::remove_file(self.dir.join(&name));
        }
    }

    /// Removes every file `purge` covers.
    pub fn purge(&self, purge: &Purge) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut index = self.lock();
        let doomed: Vec<String> = index
            .files
            .iter()
            .filter(|(_, file)| {
                file.paths
                    .iter()
                    .any(|path| purge.covers_fields(&file.host, path, &file.tags))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in doomed {
            if let Some(old) = index.files.remove(&name) {
                index.total -= old.bytes;
                let _ = std::fs::remove_file(self.dir.join(&name));
            }
        }
    }

    /// Bytes of the files.
    pub fn bytes(&self) -> u64 {
        self.lock().total
    }

    fn evict_to_fit(&self, index: &mut Index) {
        while index.total > self.capacity {
            let Some(oldest) = index
                .files
                .iter()
                .min_by_key(|(_, file)| file.used)
                .map(|(name, _)| name.clone())
            else {
                break;
            };
            if let Some(old) = index.files.remove(&oldest) {
                index.total -= old.bytes;
                let _ = std::fs::remove_file(self.dir.join(&oldest));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn indexed<T: AsSaved>(bytes: u64, used: u64, variants: &[T]) -> Indexed {
    let first = variants.first().map(AsSaved::saved);
    Indexed {
        bytes,
        used,
        host: first.map_or(String::new(), |s| s.host().to_string()),
        paths: variants
            .iter()
            .map(|v| v.saved().path().to_string())
            .collect(),
        tags: variants
            .iter()
            .flat_map(|v| v.saved().tags().to_vec())
            .collect(),
    }
}

/// Metadata read with or without its body.
trait AsSaved {
    fn saved(&self) -> &Saved;
}

impl AsSaved for Saved {
    fn saved(&self) -> &Saved {
        self
    }
}

impl AsSaved for (Saved, Bytes) {
    fn saved(&self) -> &Saved {
        &self.0
    }
}

fn file_name(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The key and variants of a cache file (bodies empty unless `bodies`).
fn read_file(path: &Path, bodies: bool) -> Option<(String, Vec<(Saved, Bytes)>)> {
    let mut file = std::io::BufReader::new(std::fs::File::open(path).ok()?);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).ok()?;
    if &magic != MAGIC {
        return None;
    }
    let key_len = read_u32(&mut file)?;
    if key_len > MAX_META {
        return None;
    }
    let mut key = vec![0u8; key_len as usize];
    file.read_exact(&mut key).ok()?;
    let count = read_u32(&mut file)?;
    let mut variants = Vec::new();
    for _ in 0..count.min(64) {
        let meta_len = read_u32(&mut file)?;
        if meta_len > MAX_META {
            return None;
        }
        let mut meta = vec![0u8; meta_len as usize];
        file.read_exact(&mut meta).ok()?;
        let saved: Saved = serde_json::from_slice(&meta).ok()?;
        let body = if bodies {
            let mut body = vec![0u8; usize::try_from(saved.body_len()).ok()?];
            file.read_exact(&mut body).ok()?;
            Bytes::from(body)
        } else {
            std::io::copy(
                &mut (&mut file).take(saved.body_len()),
                &mut std::io::sink(),
            )
            .ok()?;
            Bytes::new()
        };
        variants.push((saved, body));
    }
    Some((String::from_utf8(key).ok()?, variants))
}

fn read_u32(reader: &mut impl Read) -> Option<u32> {
    let mut bytes = [0u8; 4];
    reader.read_exact(&mut bytes).ok()?;
    Some(u32::from_le_bytes(bytes))
}
