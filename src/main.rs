//! The `outpost` binary: the CLI, and nothing clever. It wires the config, runtime and
//! server crates together.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

mod cli;
mod fleet_cli;
mod serve;

/// glibc's malloc is the default: mimalloc was about 3% faster on hello and KV reads
/// (wrk), but in the soak (docs/security.md) its RSS crept about 1 MiB a minute for as
/// long as the node ran, its purge delay at 0 too, where glibc's stayed flat after
/// warm-up. A node must hold steady for months; the `mimalloc` feature trades that for
/// the 3%.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand, ValueEnum};
use outpost_bindings::NodeStores;
use outpost_config::{Config, ConfigError};
use outpost_runtime::{Runtime, Tenant, load_tenants};

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
enum FleetCommand {
    /// Every node (what it serves, heartbeat, who lags) and every tenant's versions.
    Status {
        /// Ask a node's admin API (bearer token from OUTPOST_ADMIN_TOKEN)...
        #[arg(long, value_name = "URL", conflicts_with = "config")]
        admin: Option<String>,
        /// ...or the hub named in this node config.
        #[arg(long, value_name = "CONFIG")]
        config: Option<PathBuf>,
    },
    /// Remove a tenant from the fleet (nodes drop it if the fleet defined it).
    Remove {
        #[arg(long, value_name = "CONFIG")]
        config: PathBuf,
        #[arg(long)]
        tenant: String,
    },
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
    /// Upload a new component for a tenant through a node's admin API. The node
    /// validates and compiles it before switching; the previous version is kept for
    /// `outpost rollback`. The bearer token is read from OUTPOST_ADMIN_TOKEN.
    Deploy {
        /// The node's admin API.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// The tenant to deploy to (it must be in the node's config, or the fleet's).
        #[arg(long)]
        tenant: String,
        /// The component (.wasm).
        file: PathBuf,
        /// Publish straight to the fleet's hub named in this node config (every node
        /// serves it), instead of through one node's admin API.
        #[arg(long, value_name = "CONFIG")]
        fleet: Option<PathBuf>,
        /// With --fleet: the tenant's `[[tenant]]` table (TOML, without `component`), so
        /// the fleet defines the tenant on every node.
        #[arg(long, value_name = "FILE", requires = "fleet")]
        define: Option<PathBuf>,
    },
    /// Switch a tenant back to its previous version through a node's admin API. The
    /// bearer token is read from OUTPOST_ADMIN_TOKEN.
    Rollback {
        /// The node's admin API.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// The tenant to roll back.
        #[arg(long)]
        tenant: String,
        /// Roll back in the fleet whose hub this node config names.
        #[arg(long, value_name = "CONFIG")]
        fleet: Option<PathBuf>,
    },
    /// The fleet: what every node serves, and tenants defined in it.
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Purge a tenant's response cache on a node, through its admin API: by URL, path
    /// prefix, Cache-Tag, or everything. The bearer token is read from OUTPOST_ADMIN_TOKEN.
    Purge {
        /// The node's admin API.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// The tenant whose cache to purge.
        #[arg(long)]
        tenant: String,
        /// Exact URLs (`https://host/path?query`, or `/path?query` for every host).
        #[arg(long = "url", value_name = "URL", conflicts_with_all = ["prefixes", "tags", "everything"])]
        urls: Vec<String>,
        /// Path prefixes (`https://host/blog/` or `/blog/`).
        #[arg(long = "prefix", value_name = "PREFIX", conflicts_with_all = ["tags", "everything"])]
        prefixes: Vec<String>,
        /// Cache-Tag values.
        #[arg(long = "tag", value_name = "TAG", conflicts_with = "everything")]
        tags: Vec<String>,
        /// Everything the tenant has cached.
        #[arg(long)]
        everything: bool,
    },
    /// Internal: compile one component (read from stdin) into `--out`. The node runs
    /// this in a child process for every compile, and bounds its memory and time.
    #[command(name = "compile-component", hide = true)]
    CompileComponent {
        #[arg(long)]
        max_instances: u32,
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a guest crate NAME (in ./NAME) that builds and serves as it is.
    New {
        /// The crate's (and tenant's) name: lowercase letters, digits, `-` and `_`.
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The compiler child's stderr is its error message, nothing else.
    if !matches!(cli.command, Command::CompileComponent { .. }) {
        init_logging(cli.log_format);
    }
    let result = match cli.command {
        Command::Serve { config } => serve::serve(&config),
        Command::Check { config } => check(&config),
        Command::Deploy {
            admin,
            tenant,
            file,
            fleet,
            define,
        } => match fleet {
            Some(config) => fleet_cli::deploy(&config, &tenant, &file, define.as_deref()),
            None => cli::deploy(&admin, &tenant, &file),
        },
        Command::Rollback {
            admin,
            tenant,
            fleet,
        } => match fleet {
            Some(config) => fleet_cli::rollback(&config, &tenant),
            None => cli::rollback(&admin, &tenant),
        },
        Command::Fleet { command } => match command {
            FleetCommand::Status {
                config: Some(config),
                ..
            } => fleet_cli::status(&config),
            FleetCommand::Status { admin, .. } => {
                cli::fleet_status(admin.as_deref().unwrap_or("http://127.0.0.1:9090"))
            }
            FleetCommand::Remove { config, tenant } => fleet_cli::remove(&config, &tenant),
        },
        Command::Purge {
            admin,
            tenant,
            urls,
            prefixes,
            tags,
            everything,
        } => cli::purge(&admin, &tenant, urls, prefixes, tags, everything),
        Command::New { name, path } => cli::new(&name, path),
        Command::CompileComponent { max_instances, out } => {
            // Only the compiler's own error, on stderr: the node reads it as the reason.
            return match outpost_runtime::compile_component_main(max_instances, &out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(reason) => {
                    eprintln!("{reason}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Components are compiled by this binary in child processes, under the node's limits.
/// `/proc/self/exe` is the running binary even after a package upgrade replaced the
/// file: its compiler matches the engine that will load the artifact.
fn isolated_compiler() -> anyhow::Result<outpost_runtime::Compiler> {
    let program = PathBuf::from("/proc/self/exe");
    anyhow::ensure!(
        program.exists(),
        "/proc/self/exe is missing: outpost compiles components in a child process of \
         its own binary and needs /proc mounted"
    );
    Ok(outpost_runtime::Compiler::Isolated { program })
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

fn check(config_path: &Path) -> anyhow::Result<ExitCode> {
    let checked = Config::check_file(config_path);
    let mut problems: Vec<String> = checked.errors.iter().map(ConfigError::to_string).collect();
    let mut tenant_count = 0;
    if let Some(config) = &checked.config {
        tenant_count = config.tenants.len();
        let runtime = Runtime::with_compiler(
            &config.node,
            NodeStores::new(&config.node.data_dir, config.node.cache_memory),
            isolated_compiler()?,
        )?;
        let (_, errors) = load_all(&runtime, config);
        problems.extend(errors);
        if let Err(errors) = outpost_server::tls::SniResolver::load(config) {
            problems.extend(errors.iter().map(ToString::to_string));
        }
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
    for tenant in &config.tenants {
        if let Err(error) = outpost_server::control::load_assets(tenant) {
            errors.push(error);
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
