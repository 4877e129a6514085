//! The `outpost` binary: the CLI, and nothing clever. It wires the config, runtime and
//! server crates together.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use outpost_config::{Config, ConfigError};
use outpost_runtime::{CacheOutcome, Runtime, Tenant, load_tenants};
use outpost_server::Node;

/// A self-hostable edge runtime: serves many tenants' WebAssembly components from one
/// process, each request in a fresh, limited instance.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format: human-readable text, or one JSON object per line for log shippers.
    /// The level is set with RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Load every tenant and serve HTTP until SIGINT or SIGTERM.
    ///
    /// A config with any problem, or any tenant whose component does not load, is refused
    /// before anything is served.
    Serve {
        /// The node's TOML config.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a config and every tenant's component, report all problems, and exit
    /// non-zero if there are any. Compiles components into the cache as it goes.
    Check {
        /// The node's TOML config.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config } => check(&config),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn serve(config_path: &Path) -> anyhow::Result<ExitCode> {
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
    let started = Instant::now();
    let runtime = Runtime::new(&config.node)?;
    let (tenants, errors) = load_all(&runtime, &config);
    if !errors.is_empty() {
        report(&errors);
        return Ok(ExitCode::from(2));
    }
    if config.tenants.iter().any(|t| !t.stores.kv.is_empty()) {
        // Open (and lock) the KV database now: a second node on the same data_dir is a
        // start-up error, not a failing request.
        runtime.stores().kv()?;
    }
    log_startup(&tenants, started);

    let node = Arc::new(
        Node::new(
            config.node.id.clone(),
            tenants
                .into_iter()
                .zip(&config.tenants)
                .map(|(tenant, tenant_config)| (Arc::new(tenant), tenant_config.routes.clone()))
                .collect(),
        )
        .with_network(
            config.server.trusted_proxies.clone(),
            config.server.geo.clone(),
        ),
    );
    let runtime_threads = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime_threads.block_on(async {
        let listener = outpost_server::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(node = %node.id, %addr, "serving on http://{addr}/");
        outpost_server::serve(listener, node, shutdown_signal()).await?;
        tracing::info!("shutting down");
        anyhow::Ok(())
    })?;
    drop(runtime);
    Ok(ExitCode::SUCCESS)
}

fn check(config_path: &Path) -> anyhow::Result<ExitCode> {
    let checked = Config::check_file(config_path);
    let mut problems: Vec<String> = checked.errors.iter().map(ConfigError::to_string).collect();
    let mut tenant_count = 0;
    if let Some(config) = &checked.config {
        tenant_count = config.tenants.len();
        let runtime = Runtime::new(&config.node)?;
        let (_, errors) = load_all(&runtime, config);
        problems.extend(errors);
    }
    if problems.is_empty() {
        println!("{}: ok ({tenant_count} tenants)", config_path.display());
        Ok(ExitCode::SUCCESS)
    } else {
        report(&problems);
        Ok(ExitCode::from(2))
    }
}

fn load_all(runtime: &Arc<Runtime>, config: &Config) -> (Vec<Tenant>, Vec<String>) {
    let mut tenants = Vec::new();
    let mut errors = Vec::new();
    for loaded in load_tenants(runtime, &config.tenants) {
        match loaded {
            Ok(tenant) => tenants.push(tenant),
            Err(error) => errors.push(error.to_string()),
        }
    }
    (tenants, errors)
}

fn report(problems: &[String]) {
    let count = problems.len();
    eprintln!(
        "{count} problem{} in the config:",
        if count == 1 { "" } else { "s" }
    );
    for problem in problems {
        eprintln!("  {problem}");
    }
}

fn log_startup(tenants: &[Tenant], started: Instant) {
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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
