//! Compiled components on disk, keyed by the wasm's hash and the engine's settings, so a
//! node restarting with 1,000 tenants maps their machine code in instead of recompiling.
//!
//! Files are `<data_dir>/compiled/<sha256 of wasm>-<engine fingerprint>.cwasm`, written to
//! a temporary name and renamed, so a crash mid-write never leaves a torn artifact. A
//! file that fails to load (an older wasmtime, a corrupt file) is recompiled and replaced.
//! The directory must be writable only by the node's user: loading an artifact maps it in
//! as executable code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use outpost_config::CompileLimits;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::compiler::{CompileFailure, Compiler, compile_in_child};

/// Whether a component came from the cache or was compiled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a compiled artifact on disk.
    Hit,
    /// Compiled from the wasm (and written to the cache).
    Miss,
    /// Already loaded in this process for another tenant with the same wasm.
    Shared,
}

impl CacheOutcome {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Shared => "shared",
        }
    }
}

pub(crate) struct CompileCache {
    dir: PathBuf,
    engine_fingerprint: String,
    compiler: Compiler,
    limits: CompileLimits,
    max_instances: u32,
}

impl CompileCache {
    /// The cache in `dir`, compiling misses with `compiler` for a node with
    /// `max_instances` slots.
    pub(crate) fn new(
        dir: PathBuf,
        engine: &Engine,
        compiler: Compiler,
        limits: CompileLimits,
        max_instances: u32,
    ) -> std::io::Result<CompileCache> {
        std::fs::create_dir_all(&dir)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let fingerprint = hasher.0.finalize();
        Ok(CompileCache {
            dir,
            engine_fingerprint: hex(&fingerprint[..8]),
            compiler,
            limits,
            max_instances,
        })
    }

    /// Loads the compiled form of `wasm` (whose hash is `wasm_hash`), compiling it on a miss.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        wasm_hash: &[u8; 32],
    ) -> Result<(Component, CacheOutcome), CompileFailure> {
        let path = self.artifact_path(wasm_hash);
        if path.exists() {
            // SAFETY: artifacts are only written by `store` below, into a directory the
            // node owns; wasmtime checks the header and engine compatibility on load.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    "compiled artifact did not load ({error}); recompiling"
                ),
            }
        }
        let component = match &self.compiler {
            Compiler::InProcess => {
                let component = Component::new(engine, wasm)?;
                if let Err(error) = self.store(&component, &path) {
                    tracing::warn!(
                        path = %path.display(),
                        "could not write the compile cache ({error}); the next start will compile again"
                    );
                }
                component
            }
            Compiler::Isolated { program } => {
                compile_in_child(program, &self.limits, self.max_instances, wasm, &path)?;
                // SAFETY: as above; the child wrote it with this engine's settings.
                unsafe { Component::deserialize_file(engine, &path) }?
            }
        };
        Ok((component, CacheOutcome::Miss))
    }

    fn artifact_path(&self, wasm_hash: &[u8; 32]) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.cwasm",
            hex(wasm_hash),
            self.engine_fingerprint
        ))
    }

    fn store(&self, component: &Component, path: &Path) -> wasmtime::Result<()> {
        write_artifact(path, &component.serialize()?)?;
        Ok(())
    }
}

/// Writes an artifact under a temporary name and renames it into place, so a crash
/// mid-write never leaves a torn file at `path` (the node's and the compiler child's).
pub(crate) fn write_artifact(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// SHA-256 of a component's bytes: its identity in the cache and in logs.
pub fn wasm_hash(wasm: &[u8]) -> [u8; 32] {
    Sha256::digest(wasm).into()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds `Hash` output into SHA-256, so the fingerprint is stable across processes
/// (std's `DefaultHasher` makes no such promise).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 digest is used")
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
