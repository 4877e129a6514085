//! Reloading the config file: what changed is built off the async threads and swapped in
//! at once; what a reload cannot change (listeners, the instance pool) is warned about.

use std::collections::BTreeMap;
use std::sync::Arc;

use outpost_config::{Config, TenantConfig};
use outpost_runtime::in_parallel;

use super::history::History;
use super::load::{config_hash, load_assets, load_current};
use super::{Control, Slot, build_node};

impl Control {
    /// Re-reads the config file: added tenants start, removed ones stop, changed ones
    /// switch. A config with errors changes nothing. Returns a one-line summary.
    pub async fn reload(self: &Arc<Self>) -> Result<String, String> {
        let _one_at_a_time = self.changing.lock().await;
        let path = self.lock().config.path.clone();
        let config = match Config::load(&path) {
            Ok(config) => {
                let (config, refused) = super::with_fleet_tenants(config);
                for (tenant, why) in refused {
                    tracing::error!(%tenant, "the fleet's tenant no longer fits this node's config: {why}");
                }
                config
            }
            Err(errors) => {
                let message = format!("the config was not reloaded: {errors}");
                tracing::error!("{message}");
                self.lock().reload_error = Some(message.clone());
                return Err(message);
            }
        };
        let this = self.clone();
        let summary = tokio::task::spawn_blocking(move || this.apply(config))
            .await
            .map_err(|e| format!("reload failed: {e}"))?;
        tracing::info!("config reloaded: {summary}");
        Ok(summary)
    }

    /// Builds what changed in `config` and swaps it in.
    fn apply(&self, config: Config) -> String {
        let (old_config, current): (Config, BTreeMap<String, (TenantConfig, History)>) = {
            let state = self.lock();
            (
                state.config.clone(),
                state
                    .slots
                    .iter()
                    .map(|(name, slot)| (name.clone(), (slot.config.clone(), slot.history.clone())))
                    .collect(),
            )
        };
        warn_about_restart_only_changes(&old_config, &config);
        // Before building: new and changed tenants take their caches from here. (A tenant
        // whose cache is re-sized without its own config changing, because the node's
        // bound is now shared differently, gets a fresh cache in front of its guest;
        // its env.cache keeps the old one until its next version.)
        self.runtime.stores().configure_cache(&config);
        let mut certificate_error = None;
        if let Some(tls) = &self.tls
            && let Err(problems) = tls.reload(&config)
        {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            tracing::error!(
                "the certificates were not reloaded; the old ones keep serving: {}",
                problems.join("; ")
            );
            certificate_error = Some(format!(
                "certificates not reloaded: {}",
                problems.join("; ")
            ));
        }
        // Which tenants need building: new ones, and ones whose config or component changed.
        let work: Vec<&TenantConfig> = config
            .tenants
            .iter()
            .filter(|tenant| match current.get(&tenant.name) {
                None => true,
                Some((old, history)) => {
                    *old != **tenant || config_hash(tenant).is_none_or(|h| h != history.config_hash)
                }
            })
            .collect();
        let built = in_parallel(&work, |tenant| {
            let assets = load_assets(tenant)?;
            let history = current.get(&tenant.name).map(|(_, h)| h.clone());
            load_current(&self.runtime, &config, tenant, history).map(|(t, h)| (t, h, assets))
        });
        // The others keep their version; their files are indexed again, so new ones serve.
        let unchanged: Vec<&TenantConfig> = config
            .tenants
            .iter()
            .filter(|tenant| tenant.assets.is_some() && !work.contains(tenant))
            .collect();
        let reindexed = in_parallel(&unchanged, |tenant| load_assets(tenant));

        let mut state = self.lock();
        let (mut added, mut changed, mut kept_old) = (0, 0, 0);
        for (tenant_config, result) in work.iter().zip(built) {
            let name = tenant_config.name.clone();
            if let Ok((tenant, _, _)) = &result {
                self.metrics.tenant_loaded(tenant.info().cache.as_str());
            }
            match (result, state.slots.get_mut(&name)) {
                (Ok((tenant, history, assets)), Some(slot)) => {
                    slot.config = (*tenant_config).clone();
                    slot.tenant = Arc::new(tenant);
                    slot.assets = assets;
                    slot.history = history;
                    slot.last_error = None;
                    changed += 1;
                }
                (Ok((tenant, history, assets)), None) => {
                    state.failed.remove(&name);
                    state.slots.insert(
                        name,
                        Slot {
                            config: (*tenant_config).clone(),
                            tenant: Arc::new(tenant),
                            assets,
                            history,
                            last_error: None,
                        },
                    );
                    added += 1;
                }
                (Err(error), Some(slot)) => {
                    tracing::error!(tenant = %name, "the tenant keeps its previous version: {error}");
                    slot.last_error = Some(error);
                    kept_old += 1;
                }
                (Err(error), None) => {
                    tracing::error!(tenant = %name, "the new tenant does not start: {error}");
                    state.failed.insert(name, error);
                }
            }
        }
        for (tenant_config, result) in unchanged.iter().zip(reindexed) {
            let Some(slot) = state.slots.get_mut(&tenant_config.name) else {
                continue;
            };
            match result {
                Ok(assets) => slot.assets = assets,
                Err(error) => {
                    tracing::error!(tenant = %tenant_config.name, "the tenant keeps its previous files: {error}");
                    slot.last_error = Some(error);
                    kept_old += 1;
                }
            }
        }
        let wanted: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
        let before = state.slots.len();
        state
            .slots
            .retain(|name, _| wanted.contains(&name.as_str()));
        state
            .failed
            .retain(|name, _| wanted.contains(&name.as_str()));
        let removed = before - state.slots.len();
        state.config = config;
        state.reload_error = certificate_error;
        self.live
            .store(Arc::new(build_node(&state, &self.metrics, &self.cache)));
        format!(
            "{added} added, {changed} changed, {removed} removed, {kept_old} kept their previous version after an error"
        )
    }
}

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
