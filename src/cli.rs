//! The operator's and guest author's commands that talk to a node or make files:
//! `deploy`, `rollback`, `new`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The environment variable the admin token is read from.
const TOKEN_ENV: &str = "OUTPOST_ADMIN_TOKEN";

pub fn deploy(admin: &str, tenant: &str, file: &Path) -> anyhow::Result<ExitCode> {
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let size = wasm.len();
    let url = format!("{}/tenants/{tenant}/component", admin.trim_end_matches('/'));
    let answer = call(http::Method::PUT, &url, wasm)?;
    let hash = answer["deployed"]["hash"].as_str().unwrap_or("?");
    println!(
        "deployed {} ({size} bytes) to `{tenant}`: version {}",
        file.display(),
        &hash[..hash.len().min(16)]
    );
    Ok(ExitCode::SUCCESS)
}

/// `outpost fleet status --admin URL`: the fleet as one node sees it.
pub fn fleet_status(admin: &str) -> anyhow::Result<ExitCode> {
    let url = format!("{}/fleet", admin.trim_end_matches('/'));
    let answer = call(http::Method::GET, &url, Vec::new())?;
    crate::fleet_cli::print_status(&answer);
    Ok(ExitCode::SUCCESS)
}

pub fn rollback(admin: &str, tenant: &str) -> anyhow::Result<ExitCode> {
    let url = format!("{}/tenants/{tenant}/rollback", admin.trim_end_matches('/'));
    let answer = call(http::Method::POST, &url, Vec::new())?;
    let hash = answer["serving"]["hash"].as_str().unwrap_or("?");
    println!(
        "`{tenant}` rolled back: serving version {}",
        &hash[..hash.len().min(16)]
    );
    Ok(ExitCode::SUCCESS)
}

pub fn purge(
    admin: &str,
    tenant: &str,
    urls: Vec<String>,
    prefixes: Vec<String>,
    tags: Vec<String>,
    everything: bool,
) -> anyhow::Result<ExitCode> {
    let body = if everything {
        serde_json::json!({ "everything": true })
    } else if !urls.is_empty() {
        serde_json::json!({ "urls": urls })
    } else if !prefixes.is_empty() {
        serde_json::json!({ "prefixes": prefixes })
    } else if !tags.is_empty() {
        serde_json::json!({ "tags": tags })
    } else {
        anyhow::bail!("say what to purge: --url, --prefix, --tag or --everything");
    };
    let url = format!("{}/tenants/{tenant}/purge", admin.trim_end_matches('/'));
    call(http::Method::POST, &url, serde_json::to_vec(&body)?)?;
    println!("`{tenant}`: cache purged");
    Ok(ExitCode::SUCCESS)
}

/// Sends one admin request with the token and returns its JSON, or the node's error.
fn call(method: http::Method, url: &str, body: Vec<u8>) -> anyhow::Result<serde_json::Value> {
    let token = std::env::var(TOKEN_ENV)
        .with_context(|| format!("set {TOKEN_ENV} to the node's admin token"))?;
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token.trim()),
        )
        .body(Full::new(Bytes::from(body)))
        .with_context(|| format!("`{url}` is not a valid admin URL"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let response = client
            .request(request)
            .await
            .with_context(|| format!("cannot reach the admin API at {url}"))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    })?;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(
        |_| serde_json::json!({ "error": String::from_utf8_lossy(&body).trim().to_string() }),
    );
    if !status.is_success() {
        bail!(
            "the node refused ({status}): {}",
            json["error"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(json)
}

/// The SDK this binary was built with, for the new crate's path dependency.
const SDK_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/guest-sdk");

pub fn new(name: &str, path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "`{name}` cannot name a guest: use lowercase letters, digits, `-` and `_`, starting with a letter"
        );
    }
    let dir = path.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        bail!(
            "{} already exists; choose another name or --path",
            dir.display()
        );
    }
    if !Path::new(SDK_PATH).join("Cargo.toml").exists() {
        bail!("the outpost SDK is not at {SDK_PATH}, where this binary was built from");
    }
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate_file}}", name)
            .replace("{{sdk_path}}", SDK_PATH)
    };
    let files = [
        (
            "Cargo.toml",
            include_str!("../templates/guest/Cargo.toml.tmpl"),
        ),
        (
            "src/main.rs",
            include_str!("../templates/guest/main.rs.tmpl"),
        ),
        (
            "outpost.toml",
            include_str!("../templates/guest/outpost.toml.tmpl"),
        ),
        (
            "README.md",
            include_str!("../templates/guest/README.md.tmpl"),
        ),
        (
            ".gitignore",
            include_str!("../templates/guest/gitignore.tmpl"),
        ),
    ];
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for (file, template) in files {
        let target = dir.join(file);
        std::fs::write(&target, fill(template))
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    println!(
        "created {}: build it with `cargo build --release --target wasm32-wasip2` there, then `outpost serve --config outpost.toml`",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
