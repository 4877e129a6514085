//! The bodies of outpost's fuzz targets. `fuzz/` (cargo-fuzz, libFuzzer) runs them on
//! generated inputs; `tests/corpus.rs` replays the kept corpora through them on every
//! test run. Each takes raw bytes and panics only on a bug: a crash, or an invariant the
//! code promises (named where it is checked).

pub mod admin;
pub mod bindings;
pub mod config;
pub mod router;

/// A fuzz target's body: raw bytes in, a panic only on a bug.
pub type Target = fn(&[u8]);

/// The fuzz targets, by the name of their corpus directory under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config::run),
    ("router", router::run),
    ("admin", admin::run),
    ("bindings", bindings::run),
];
