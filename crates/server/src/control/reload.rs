//! What a reload cannot change: listeners and the instance pool are set up once.

use outpost_config::Config;

/// Listeners and the instance pool are set up once; say so when the file changes them.
pub(super) fn warn_about_restart_only_changes(old: &Config, new: &Config) {
    let mut changed = Vec::new();
    if old.server.listen != new.server.listen {
        changed.push("server.listen");
    }
    if old.server.tls.as_ref().map(|t| t.listen) != new.server.tls.as_ref().map(|t| t.listen) {
        changed.push("server.tls (the listener)");
    }
    if old.server.admin != new.server.admin {
        changed.push("server.admin");
    }
    if old.server.connections != new.server.connections {
        changed.push("server connection limits");
    }
    if old.node.data_dir != new.node.data_dir || old.node.max_instances != new.node.max_instances {
        changed.push("node.data_dir / node.max_instances");
    }
    if !changed.is_empty() {
        tracing::warn!(
            "{} changed in the config; that takes effect at the next restart",
            changed.join(", ")
        );
    }
}
