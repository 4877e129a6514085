//! `outpost serve`: load the tenants, join the fleet if there is one, listen, and serve
//! until a signal says stop.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use outpost_bindings::NodeStores;
use outpost_config::{Config, ConfigError};
use outpost_runtime::{CacheOutcome, Runtime, Tenant};
use outpost_server::Front;
use outpost_server::admin::Admin;
use outpost_server::control::Control;
use outpost_server::metrics::Metrics;

use crate::report;

pub(crate) fn serve(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(errors) => {
            report(
                &errors
                    .0
                    .iter()
                    .map(ConfigError::to_string)
                    .collect::<Vec<_>>(),
            );
            return Ok(ExitCode::from(2));
        }
    };
    let runtime_threads = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime_threads.block_on(serve_config(config))
}

/// Connects to the fleet's hub and gives global KV bindings their backend. The hub may be
/// down: the node serves what it has and joins when the hub is back.
async fn join_fleet(
    fleet: &outpost_config::FleetConfig,
    config: &Config,
    stores: &NodeStores,
) -> anyhow::Result<outpost_fleet::Hub> {
    let hub = outpost_fleet::Hub::connect(fleet, &config.node.id).await?;
    if !hub.wait_connected(Duration::from_secs(3)).await {
        tracing::warn!(
            nats = %fleet.nats.join(", "),
            "the fleet's hub is unreachable; serving this node's last known state until it is back"
        );
    }
    let global = outpost_fleet::GlobalKv::open(&hub, &config.node.data_dir)?;
    stores.set_global_kv(Arc::new(outpost_fleet::GlobalBackend(global)));
    Ok(hub)
}

async fn serve_config(config: Config) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let metrics = Metrics::new();

    // The admin API answers /healthz (and /readyz: not yet) while tenants compile.
    let admin = match &config.server.admin {
        Some(admin_config) => {
            let listener = tokio::net::TcpListener::bind(admin_config.listen)
                .await
                .with_context(|| {
                    format!("cannot listen on {} (server.admin)", admin_config.listen)
                })?;
            let admin = Admin::new(admin_config.token.clone());
            tracing::info!(addr = %listener.local_addr()?, "admin API on http://{}/", listener.local_addr()?);
            tokio::spawn(admin.clone().serve(listener, stopping.clone()));
            Some(admin)
        }
        None => None,
    };

    let stores = NodeStores::new(&config.node.data_dir, config.node.cache_memory);
    let hub = match &config.fleet {
        Some(fleet) => Some(join_fleet(fleet, &config, &stores).await?),
        None => None,
    };
    if let (Some(admin), Some(hub)) = (&admin, &hub) {
        let hub = hub.clone();
        admin.report_degraded(Box::new(move || {
            (!hub.is_connected()).then(|| "the fleet's hub is unreachable".to_string())
        }));
    }
    let runtime =
        Runtime::with_compiler(&config.node, stores.clone(), crate::isolated_compiler()?)?;
    metrics.register(|registry| runtime.register_metrics(registry));
    // Tenants the fleet defined, kept from the last run: they serve before the hub answers.
    let (config, refused) = outpost_server::control::with_fleet_tenants(config);
    for (tenant, why) in refused {
        tracing::error!(%tenant, "the fleet's tenant does not fit this node's config: {why}");
    }
    let loading = {
        let (runtime, metrics, config) = (runtime.clone(), metrics.clone(), config.clone());
        tokio::task::spawn_blocking(move || Control::start(runtime, metrics, config))
    };
    let control = match loading.await? {
        Ok(control) => {
            let control = Arc::new(control);
            metrics.register(|registry| registry.register_collector(Box::new(control.gauges())));
            metrics.register(|registry| control.http_cache().register_metrics(registry));
            control
        }
        Err(errors) => {
            report(&errors);
            return Ok(ExitCode::from(2));
        }
    };
    let uses_sled = config.tenants.iter().any(|t| {
        t.stores
            .kv
            .values()
            .any(|kind| *kind == outpost_config::KvBackendKind::Sled)
    });
    if uses_sled {
        // Open (and lock) the KV database now: a second node on the same data_dir is a
        // start-up error, not a failing request.
        stores.open_kv_now()?;
    }
    log_startup(&control.tenants(), started);
    if let Some(hub) = &hub {
        let link = outpost_server::control::FleetLink {
            deploys: outpost_fleet::Deploys::new(hub),
            statuses: outpost_fleet::Statuses::new(hub),
            purges: outpost_fleet::Purges::new(hub),
            node: config.node.id.clone(),
        };
        control.join_fleet(link.clone());
        tokio::spawn(outpost_server::control::follow_fleet(control.clone(), link));
    }

    let front = Front::new(
        control.live(),
        config.server.connections.clone(),
        stopping.clone(),
    );
    metrics.register(|registry| registry.register_collector(Box::new(front.gauges())));
    // The HTTPS listener is bound first: once the plain port answers, every listener
    // does (clients and tests take the plain port as the sign the node is up).
    let secure = match (&config.server.tls, control.certificates()) {
        (Some(tls), Some(certificates)) => {
            let listener = tokio::net::TcpListener::bind(tls.listen)
                .await
                .with_context(|| format!("cannot listen on {} (server.tls)", tls.listen))?;
            Some((listener, outpost_server::tls::acceptor(certificates)))
        }
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(node = %config.node.id, %addr, "serving on http://{addr}/");
    let mut listeners = vec![tokio::spawn(front.clone().serve(listener, None))];
    if let Some((listener, acceptor)) = secure {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "serving on https://{addr}/ (HTTP/2 and HTTP/1.1)");
        listeners.push(tokio::spawn(front.clone().serve(listener, Some(acceptor))));
    }
    if let Some(admin) = &admin {
        admin.ready(control.clone(), metrics.clone());
    }

    wait_for_stop(&control, config.node.watch.then_some(config.path.as_path())).await;
    tracing::info!(
        grace_s = config.server.connections.shutdown_grace.as_secs_f64(),
        "shutting down: no new connections; letting requests in flight finish"
    );
    let _ = stop.send(true);
    for listener in listeners {
        let _ = listener.await;
    }
    let tenants = control.tenants();
    let finished = front
        .drain(|| tenants.iter().map(|t| t.in_flight()).sum())
        .await;
    if finished {
        tracing::info!("every request finished; exiting");
    } else {
        tracing::warn!("the shutdown grace period ended with requests still running; exiting");
    }
    drop(control);
    drop(runtime);
    Ok(ExitCode::SUCCESS)
}

/// Serves until SIGINT or SIGTERM; SIGHUP (and, with `watch`, a change to the config
/// file) reloads the config.
#[cfg(unix)]
async fn wait_for_stop(control: &Arc<Control>, watch: Option<&Path>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut seen = watch.and_then(modified);
    let mut poll = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                let _ = control.reload().await;
            }
            _ = poll.tick(), if watch.is_some() => {
                let now = watch.and_then(modified);
                if now != seen {
                    seen = now;
                    tracing::info!("the config file changed: reloading");
                    let _ = control.reload().await;
                }
            }
        }
    }
}

fn log_startup(tenants: &[Arc<Tenant>], started: Instant) {
    for tenant in tenants {
        let info = tenant.info();
        tracing::info!(
            tenant = %info.name,
            world = ?info.world,
            hash = &info.component_hash[..16],
            compile_cache = info.cache.as_str(),
            ms = info.load_time.as_secs_f64() * 1e3,
            "tenant loaded"
        );
    }
    let count = |outcome| tenants.iter().filter(|t| t.info().cache == outcome).count();
    tracing::info!(
        tenants = tenants.len(),
        cache_hits = count(CacheOutcome::Hit),
        cache_misses = count(CacheOutcome::Miss),
        shared = count(CacheOutcome::Shared),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "all tenants loaded"
    );
}

/// Without Unix signals: serves until Ctrl-C (reload through the admin API).
#[cfg(not(unix))]
async fn wait_for_stop(_control: &Arc<Control>, _watch: Option<&Path>) {
    let _ = tokio::signal::ctrl_c().await;
}
