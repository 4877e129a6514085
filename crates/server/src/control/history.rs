//! A tenant's version history and its on-disk form: `data_dir/deploys/<tenant>/`
//! holds each API-deployed wasm by hash and `versions.json`, written durably.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use outpost_config::Config;
use serde::{Deserialize, Serialize};

use super::KEPT_VERSIONS;

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The `component` file named in the config.
    Config,
    /// Uploaded through the admin API.
    Api,
    /// Deployed to the fleet (through any node, or `outpost deploy --fleet`).
    Fleet,
}

/// One version of a tenant's component.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    /// SHA-256 of the wasm, hex.
    pub hash: String,
    pub source: Source,
    /// Seconds since the Unix epoch.
    pub deployed_at: u64,
}

/// A tenant's versions, oldest first; the last one serves.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct History {
    /// The config component's hash when last seen: a different one is a new version.
    pub(super) config_hash: String,
    pub(super) versions: Vec<Version>,
}

impl History {
    /// Adds the newest version, forgetting the oldest past [`KEPT_VERSIONS`].
    pub(super) fn push(&mut self, version: Version) {
        self.versions.push(version);
        let excess = self.versions.len().saturating_sub(KEPT_VERSIONS);
        self.versions.drain(..excess);
    }
}

pub(super) fn deploys_dir(config: &Config, tenant: &str) -> PathBuf {
    config.node.data_dir.join("deploys").join(tenant)
}

pub(super) fn read_history(dir: &Path) -> std::io::Result<History> {
    match std::fs::read(dir.join("versions.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(History::default()),
        Err(e) => Err(e),
    }
}

pub(super) fn save_history(dir: &Path, history: &History) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(history).map_err(std::io::Error::other)?;
    write_durably(&dir.join("versions.json"), &json)
}

/// Writes `bytes` to `path` so that after a crash it is either the old file or the whole
/// new one: a temp file, fsync, rename, fsync of the directory.
pub(super) fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(n: u64) -> Version {
        Version {
            hash: format!("{n:064x}"),
            source: Source::Api,
            deployed_at: n,
        }
    }

    #[test]
    fn push_keeps_the_newest_versions() {
        let mut history = History::default();
        for n in 0..(KEPT_VERSIONS as u64 + 3) {
            history.push(version(n));
        }
        assert_eq!(history.versions.len(), KEPT_VERSIONS);
        assert_eq!(history.versions.first().map(|v| v.deployed_at), Some(3));
        assert_eq!(
            history.versions.last().map(|v| v.deployed_at),
            Some(KEPT_VERSIONS as u64 + 2)
        );
    }

    #[test]
    fn history_survives_a_write_and_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(
            read_history(dir.path())
                .expect("absent is empty")
                .versions
                .is_empty()
        );
        let mut history = History {
            config_hash: "abc".into(),
            ..History::default()
        };
        history.push(version(1));
        save_history(dir.path(), &history).expect("save");
        let read = read_history(dir.path()).expect("read");
        assert_eq!(read.config_hash, "abc");
        assert_eq!(read.versions.len(), 1);
        assert!(
            !dir.path().join("versions.tmp").exists(),
            "the temp file was renamed"
        );
    }
}
