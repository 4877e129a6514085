//! `[node]`: the node's identity and storage.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use crate::tenant::is_name;
use crate::{Validator, raw};

/// Node id when `[node] id` is not set.
pub const DEFAULT_NODE_ID: &str = "outpost";
/// Data directory (relative to the config file) when `[node] data_dir` is not set.
pub const DEFAULT_DATA_DIR: &str = "data";
/// How many instances may be live on the node at once, across all tenants.
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;

/// `[node]`: this node's identity and storage.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Names the node in logs and in the `x-outpost-node` header.
    pub id: String,
    /// Where compiled components and tenants' data live; relative paths in the config are
    /// resolved against the config file's directory.
    pub data_dir: PathBuf,
    /// Total live instances the pooling allocator reserves room for.
    pub max_instances: u32,
    /// Reload when the config file changes (as on SIGHUP).
    pub watch: bool,
    /// Bytes all tenants' response caches may hold together.
    pub cache_memory: u64,
    /// What compiling one component may take: a component built to compile for minutes
    /// or to need gigabytes is refused, not given the node.
    pub compile: CompileLimits,
}

/// Bounds on compiling one component (at start, deploy and reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    /// Wall-clock time (`node.compile_timeout`).
    pub timeout: Duration,
    /// Memory the compiler may allocate (`node.compile_memory`).
    pub memory: u64,
}

impl Default for CompileLimits {
    fn default() -> CompileLimits {
        CompileLimits {
            // A 13 MB JavaScript engine compiles in about 10 s on one slow core.
            timeout: Duration::from_secs(120),
            memory: 2 << 30,
        }
    }
}

impl Validator<'_> {
    pub(crate) fn node(&mut self, raw: Option<Spanned<raw::RawNode>>) -> NodeConfig {
        let mut node = NodeConfig {
            id: DEFAULT_NODE_ID.to_string(),
            data_dir: self.resolve(DEFAULT_DATA_DIR),
            max_instances: DEFAULT_MAX_INSTANCES,
            watch: false,
            cache_memory: crate::DEFAULT_CACHE_MEMORY,
            compile: CompileLimits::default(),
        };
        let Some(raw) = raw.map(Spanned::into_inner) else {
            return node;
        };
        node.watch = raw.watch.is_some_and(Spanned::into_inner);
        if let Some(id) = raw.id {
            if is_name(id.get_ref()) {
                node.id = id.into_inner();
            } else {
                let error = self.error(
                    &id,
                    "node.id",
                    "use lowercase letters, digits, `-` and `_` (at most 63)",
                );
                self.errors.push(error);
            }
        }
        if let Some(dir) = raw.data_dir {
            if dir.get_ref().trim().is_empty() {
                let error = self.error(&dir, "node.data_dir", "cannot be empty");
                self.errors.push(error);
            } else {
                node.data_dir = self.resolve(dir.get_ref());
            }
        }
        if let Some(memory) = raw.cache_memory {
            match crate::limits::size(memory.get_ref()) {
                Ok(bytes) => node.cache_memory = bytes,
                Err(message) => {
                    let error = self.error(&memory, "node.cache_memory", message);
                    self.errors.push(error);
                }
            }
        }
        if let Some(timeout) = raw.compile_timeout {
            match crate::parse_duration(timeout.get_ref()) {
                Ok(d) if !d.is_zero() => node.compile.timeout = d,
                Ok(_) => {
                    let error = self.error(&timeout, "node.compile_timeout", "must be above 0");
                    self.errors.push(error);
                }
                Err(message) => {
                    let error = self.error(&timeout, "node.compile_timeout", message);
                    self.errors.push(error);
                }
            }
        }
        if let Some(memory) = raw.compile_memory {
            match crate::limits::size(memory.get_ref()) {
                // The compiler process itself needs some room before it compiles anything.
                Ok(bytes) if bytes >= 64 << 20 => node.compile.memory = bytes,
                Ok(_) => {
                    let error =
                        self.error(&memory, "node.compile_memory", "must be at least 64MiB");
                    self.errors.push(error);
                }
                Err(message) => {
                    let error = self.error(&memory, "node.compile_memory", message);
                    self.errors.push(error);
                }
            }
        }
        if let Some(max) = raw.max_instances {
            if (1..=100_000).contains(max.get_ref()) {
                node.max_instances = *max.get_ref();
            } else {
                let error = self.error(&max, "node.max_instances", "must be between 1 and 100000");
                self.errors.push(error);
            }
        }
        node
    }
}
