//! The control plane: which version of each tenant serves, and how that changes —
//! reloads of the config file (SIGHUP, or `watch = true`), and deploys and rollbacks
//! through the admin API.
//!
//! Every change builds the new tenants first and then swaps the whole [`Node`] at once;
//! requests already running keep the `Node` (and so the tenant versions) they started on.
//! A tenant whose new version fails to load keeps serving the old one, with the error
//! kept for the admin API.
//!
//! Versions: a tenant serves the newest of its config's component and the components
//! deployed through the API. API deploys are kept under `data_dir/deploys/<tenant>/`
//! (the wasm by hash, and `versions.json`), so a restart serves what was deployed, and a
//! rollback can go back to any of the last [`KEPT_VERSIONS`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use outpost_cache::{HttpCache, Purge};
use outpost_config::{Config, TenantConfig};
use outpost_runtime::{Runtime, Tenant, in_parallel, wasm_hash};

use crate::assets::Assets;
use crate::metrics::Metrics;
use crate::tls::SniResolver;
use crate::{Node, Served};

mod fleet;
mod history;
mod load;
mod reload;
mod status;

pub use fleet::{FleetLink, follow_fleet, with_fleet_tenants};
pub use history::{Source, Version};
pub use status::{ControlGauges, TenantStatus};

use history::{History, deploys_dir, now, save_history, write_durably};
pub use load::load_assets;
use load::{load_current, load_version};

/// Versions kept per tenant for rollback.
pub const KEPT_VERSIONS: usize = 10;

/// Why a deploy or rollback was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no tenant `{0}` in the config; a deploy replaces a configured tenant's component")]
    NoSuchTenant(String),
    #[error("tenant `{tenant}`: the new component was not deployed: {reason}")]
    Invalid { tenant: String, reason: String },
    #[error("tenant `{0}` has no cache to purge; give it one with `cache = {{ enabled = true }}`")]
    NoCache(String),
    #[error("tenant `{0}` has no earlier version to roll back to")]
    NothingToRollBack(String),
    #[error("tenant `{tenant}`: the fleet deploy did not go through: {reason}")]
    Fleet { tenant: String, reason: String },
    #[error("tenant `{tenant}`: cannot keep the deployed version: {source}")]
    Storage {
        tenant: String,
        source: std::io::Error,
    },
}

/// The serving state of one tenant.
struct Slot {
    /// The config the serving tenant was built from.
    config: TenantConfig,
    tenant: Arc<Tenant>,
    /// Its static files, indexed when the config was last read.
    assets: Option<Arc<Assets>>,
    history: History,
    last_error: Option<String>,
}

struct State {
    config: Config,
    slots: BTreeMap<String, Slot>,
    /// Tenants in the config that have never loaded, and why.
    failed: BTreeMap<String, String>,
    /// Why the last reload of the config file was refused, if it was.
    reload_error: Option<String>,
}

/// The node's control plane; cheap to share.
pub struct Control {
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    live: Arc<ArcSwap<Node>>,
    /// The tenants' response caches, which outlive the versions that fill them.
    cache: Arc<HttpCache>,
    /// The HTTPS listener's certificates, reloaded with the config.
    tls: Option<Arc<SniResolver>>,
    state: Mutex<State>,
    /// One change at a time (loads run outside `state`'s lock).
    changing: tokio::sync::Mutex<()>,
    /// The fleet this node is one of, once it has joined.
    fleet: std::sync::OnceLock<FleetLink>,
    /// The last fleet purge this node applied.
    purged_through: std::sync::atomic::AtomicU64,
}

impl Control {
    /// Loads every tenant of `config`; any failure refuses the start (the errors, each
    /// naming the tenant, are returned).
    pub fn start(
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
        config: Config,
    ) -> Result<Control, Vec<String>> {
        runtime.stores().configure_cache(&config);
        let loaded = in_parallel(&config.tenants, |tenant| {
            let assets = load_assets(tenant)?;
            load_current(&runtime, &config, tenant, None).map(|(t, h)| (t, h, assets))
        });
        let mut slots = BTreeMap::new();
        let mut errors = Vec::new();
        for (tenant_config, result) in config.tenants.iter().zip(loaded) {
            match result {
                Ok((tenant, history, assets)) => {
                    metrics.tenant_loaded(tenant.info().cache.as_str());
                    slots.insert(
                        tenant_config.name.clone(),
                        Slot {
                            config: tenant_config.clone(),
                            tenant: Arc::new(tenant),
                            assets,
                            history,
                            last_error: None,
                        },
                    );
                }
                Err(error) => errors.push(error),
            }
        }
        let tls = match SniResolver::load(&config) {
            Ok(tls) => tls,
            Err(problems) => {
                errors.extend(problems.iter().map(ToString::to_string));
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let state = State {
            config,
            slots,
            failed: BTreeMap::new(),
            reload_error: None,
        };
        let cache = runtime.stores().http_cache().clone();
        let live = Arc::new(ArcSwap::from_pointee(build_node(&state, &metrics, &cache)));
        Ok(Control {
            runtime,
            metrics,
            cache,
            live,
            tls,
            state: Mutex::new(state),
            changing: tokio::sync::Mutex::new(()),
            fleet: std::sync::OnceLock::new(),
            purged_through: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The node requests are served by; swapped on every change.
    pub fn live(&self) -> Arc<ArcSwap<Node>> {
        self.live.clone()
    }

    /// The HTTPS listener's certificates, if `[server] tls` is set.
    pub fn certificates(&self) -> Option<Arc<SniResolver>> {
        self.tls.clone()
    }

    /// Distinct compiled components held in memory by the serving versions.
    /// The gauges the metrics read at each scrape; register them with
    /// [`Metrics::register`](crate::metrics::Metrics::register).
    pub fn gauges(self: &Arc<Self>) -> ControlGauges {
        ControlGauges(Arc::downgrade(self))
    }

    pub fn components_in_memory(&self) -> usize {
        self.runtime.components_in_memory()
    }

    /// The config in force.
    pub fn config(&self) -> Config {
        self.lock().config.clone()
    }

    /// Every serving tenant, by name.
    pub fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.lock()
            .slots
            .values()
            .map(|slot| slot.tenant.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Validates, compiles and switches to `wasm` for `name`, keeping the previous version.
    pub async fn deploy(
        self: &Arc<Self>,
        name: &str,
        wasm: Vec<u8>,
    ) -> Result<Version, ControlError> {
        if let Some(link) = self.fleet.get().cloned() {
            return self.deploy_to_fleet(&link, name, wasm).await;
        }
        self.deploy_from(name, wasm, Source::Api).await
    }

    /// Like [`Control::deploy`], recording where the version came from.
    pub async fn deploy_from(
        self: &Arc<Self>,
        name: &str,
        wasm: Vec<u8>,
        source: Source,
    ) -> Result<Version, ControlError> {
        self.change(
            name,
            move |runtime, name, config, tenant_config, mut history| {
                let hash = outpost_runtime::hex(&wasm_hash(&wasm));
                let origin = PathBuf::from(format!("(upload {})", &hash[..16]));
                let tenant =
                    Tenant::load_wasm(runtime, &tenant_config, &wasm, &origin).map_err(|e| {
                        ControlError::Invalid {
                            tenant: name.to_string(),
                            reason: e.error.to_string(),
                        }
                    })?;
                let dir = deploys_dir(&config, name);
                let storage = |source| ControlError::Storage {
                    tenant: name.to_string(),
                    source,
                };
                write_durably(&dir.join(format!("{hash}.wasm")), &wasm).map_err(storage)?;
                let version = Version {
                    hash,
                    source,
                    deployed_at: now(),
                };
                history.push(version.clone());
                save_history(&dir, &history).map_err(storage)?;
                tracing::info!(tenant = %name, hash = %version.hash, "deployed");
                Ok((tenant, history, version))
            },
        )
        .await
    }

    /// Switches `name` back to its previous version (on a fleet node: the fleet's).
    pub async fn rollback(self: &Arc<Self>, name: &str) -> Result<Version, ControlError> {
        if let Some(link) = self.fleet.get().cloned() {
            return self.rollback_in_fleet(&link, name).await;
        }
        self.change(name, |runtime, name, config, tenant_config, mut history| {
            if history.versions.len() < 2 {
                return Err(ControlError::NothingToRollBack(name.to_string()));
            }
            history.versions.pop();
            let target = history
                .versions
                .last()
                .cloned()
                .expect("two versions were there");
            let (tenant, _) =
                load_version(runtime, &config, &tenant_config, &target).map_err(|reason| {
                    ControlError::Invalid {
                        tenant: name.to_string(),
                        reason,
                    }
                })?;
            save_history(&deploys_dir(&config, name), &history).map_err(|source| {
                ControlError::Storage {
                    tenant: name.to_string(),
                    source,
                }
            })?;
            tracing::info!(tenant = %name, hash = %target.hash, "rolled back");
            Ok((tenant, history, target))
        })
        .await
    }

    /// One change to `name` at a time: `work` builds the new version (off the async
    /// threads: it compiles) from the tenant's config and history, then it serves.
    async fn change(
        self: &Arc<Self>,
        name: &str,
        work: impl FnOnce(
            &Arc<Runtime>,
            &str,
            Config,
            TenantConfig,
            History,
        ) -> Result<(Tenant, History, Version), ControlError>
        + Send
        + 'static,
    ) -> Result<Version, ControlError> {
        let _one_at_a_time = self.changing.lock().await;
        let (config, tenant_config, history) = self.slot_parts(name)?;
        let this = self.clone();
        let owned = name.to_string();
        tokio::task::spawn_blocking(move || {
            let (tenant, history, version) =
                work(&this.runtime, &owned, config, tenant_config, history)?;
            this.switch(&owned, tenant, history);
            Ok(version)
        })
        .await
        .map_err(|e| ControlError::Invalid {
            tenant: name.to_string(),
            reason: format!("the change did not finish: {e}"),
        })?
    }

    fn slot_parts(&self, name: &str) -> Result<(Config, TenantConfig, History), ControlError> {
        let state = self.lock();
        let slot = state
            .slots
            .get(name)
            .ok_or_else(|| ControlError::NoSuchTenant(name.to_string()))?;
        Ok((
            state.config.clone(),
            slot.config.clone(),
            slot.history.clone(),
        ))
    }

    fn switch(&self, name: &str, tenant: Tenant, history: History) {
        self.metrics.tenant_loaded(tenant.info().cache.as_str());
        let mut state = self.lock();
        if let Some(slot) = state.slots.get_mut(name) {
            slot.tenant = Arc::new(tenant);
            slot.history = history;
            slot.last_error = None;
        }
        self.live
            .store(Arc::new(build_node(&state, &self.metrics, &self.cache)));
    }

    /// The node's response caches, for their metrics.
    pub fn http_cache(&self) -> Arc<HttpCache> {
        self.cache.clone()
    }

    /// Whether `name` has a cache to purge.
    fn check_purge(&self, name: &str) -> Result<(), ControlError> {
        if !self.lock().slots.contains_key(name) {
            return Err(ControlError::NoSuchTenant(name.to_string()));
        }
        match self.cache.tenant(name) {
            Some(_) => Ok(()),
            None => Err(ControlError::NoCache(name.to_string())),
        }
    }

    /// Purges `name`'s response cache (on this node).
    pub fn purge(&self, name: &str, purge: &Purge) -> Result<(), ControlError> {
        self.check_purge(name)?;
        match self.cache.tenant(name) {
            Some(cache) => {
                cache.purge(purge);
                tracing::info!(tenant = %name, ?purge, "cache purged");
                Ok(())
            }
            None => Err(ControlError::NoCache(name.to_string())),
        }
    }

    /// Why the last config reload was refused, if it was.
    pub fn reload_error(&self) -> Option<String> {
        self.lock().reload_error.clone()
    }
}

/// Builds the node that serves `state`'s tenants on their configured routes.
fn build_node(state: &State, metrics: &Metrics, cache: &HttpCache) -> Node {
    Node::new(
        state.config.node.id.clone(),
        state
            .slots
            .values()
            .map(|slot| Served {
                tenant: slot.tenant.clone(),
                routes: slot.config.routes.clone(),
                assets: slot.assets.clone(),
                cache: slot
                    .config
                    .cache
                    .enabled
                    .then(|| cache.tenant(&slot.config.name))
                    .flatten(),
            })
            .collect(),
    )
    .with_network(
        state.config.server.trusted_proxies.clone(),
        state.config.server.geo.clone(),
    )
    .with_body_prefetch(
        state.config.server.connections.body_prefetch,
        state.config.server.connections.body_timeout,
    )
    .with_metrics(metrics)
}
