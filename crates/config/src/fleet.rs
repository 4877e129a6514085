//! `[fleet]`: the NATS JetStream hub this node shares deploys and global KV through.
//! Without the section the node is on its own, as before.

use std::path::PathBuf;

use toml::Spanned;

use crate::{Validator, is_env_name, raw};

/// The fleet's name when `[fleet] name` is not set: the prefix of its buckets.
pub const DEFAULT_FLEET_NAME: &str = "outpost";

/// `[fleet]`: where the hub is and how to sign in to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `nats://host:port` (or `tls://`) URLs of the hub's servers or the PoP's leaf node.
    pub nats: Vec<String>,
    /// Names the fleet's buckets (`<name>-tenants`, `<name>-kv`, …): one hub may carry
    /// several fleets.
    pub name: String,
    /// A NATS `.creds` file (JWT and NKey seed), if the hub wants one.
    pub credentials: Option<PathBuf>,
    /// The environment variable holding a token, if the hub wants one.
    pub token_env: Option<String>,
    /// Copies the hub keeps of each bucket: 3 for a production hub (survives one server
    /// lost), 1 for a one-server hub.
    pub replicas: usize,
}

/// `[fleet] replicas` when not set.
pub const DEFAULT_FLEET_REPLICAS: usize = 3;

impl Validator<'_> {
    pub(crate) fn fleet(&mut self, raw: Option<Spanned<raw::RawFleet>>) -> Option<FleetConfig> {
        let raw = raw?;
        let span = raw.span();
        let raw = raw.into_inner();
        let mut fleet = FleetConfig {
            nats: Vec::new(),
            name: DEFAULT_FLEET_NAME.to_string(),
            credentials: None,
            token_env: None,
            replicas: DEFAULT_FLEET_REPLICAS,
        };
        if let Some(replicas) = raw.replicas {
            if (1..=5).contains(replicas.get_ref()) {
                fleet.replicas = *replicas.get_ref() as usize;
            } else {
                let error = self.error(
                    &replicas,
                    "fleet.replicas",
                    "must be between 1 and 5 (JetStream's limit)",
                );
                self.errors.push(error);
            }
        }
        match raw.nats {
            None => {
                let error = self.error(
                    &Spanned::new(span, ()),
                    "fleet.nats",
                    "a fleet needs its hub: nats = [\"nats://hub.example.com:4222\"]",
                );
                self.errors.push(error);
            }
            Some(urls) if urls.get_ref().is_empty() => {
                let error = self.error(&urls, "fleet.nats", "name at least one NATS server");
                self.errors.push(error);
            }
            Some(urls) => {
                for url in urls.into_inner() {
                    let text = url.get_ref();
                    let scheme_ok = ["nats://", "tls://", "ws://", "wss://"]
                        .iter()
                        .any(|scheme| text.starts_with(scheme));
                    let has_host = text
                        .split_once("://")
                        .is_some_and(|(_, rest)| !rest.trim_matches('/').is_empty());
                    if scheme_ok && has_host && !text.contains('@') {
                        fleet.nats.push(text.clone());
                    } else if text.contains('@') {
                        let error = self.error(
                            &url,
                            "fleet.nats",
                            "credentials do not belong in the config; use `credentials` (a .creds file) or `token_env`",
                        );
                        self.errors.push(error);
                    } else {
                        let error = self.error(
                            &url,
                            "fleet.nats",
                            format!("`{text}` is not a NATS URL; use \"nats://host:4222\" or \"tls://host:4222\""),
                        );
                        self.errors.push(error);
                    }
                }
            }
        }
        if let Some(name) = raw.name {
            let text = name.get_ref();
            let valid = !text.is_empty()
                && text.len() <= 32
                && text
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if valid {
                fleet.name = text.clone();
            } else {
                let error = self.error(
                    &name,
                    "fleet.name",
                    "use lowercase letters, digits and `_` (at most 32): it prefixes the fleet's bucket names",
                );
                self.errors.push(error);
            }
        }
        if let Some(path) = raw.credentials {
            let resolved = self.resolve(path.get_ref());
            if resolved.is_file() {
                fleet.credentials = Some(resolved);
            } else {
                let error = self.error(
                    &path,
                    "fleet.credentials",
                    format!("no credentials file at {}", resolved.display()),
                );
                self.errors.push(error);
            }
        }
        if let Some(var) = raw.token_env {
            if is_env_name(var.get_ref()) {
                fleet.token_env = Some(var.into_inner());
            } else {
                let error = self.error(
                    &var,
                    "fleet.token_env",
                    "name an environment variable, e.g. \"OUTPOST_FLEET_TOKEN\"",
                );
                self.errors.push(error);
            }
        }
        Some(fleet)
    }
}
