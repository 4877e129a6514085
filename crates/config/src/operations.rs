//! `[server]`'s operational settings: the TLS listener and certificates, the admin API,
//! and the limits on client connections. Certificates are only located here; the server
//! crate reads and checks them (expiry, key match, names) and reports errors at the
//! [`Location`] kept with them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use crate::limits::size;
use crate::raw::{RawAdmin, RawCertificate, RawServer, RawTlsListener};
use crate::{ConfigError, Location, Secret, Validator, parse_duration};

/// Address of the TLS listener when `[server] tls` sets none.
pub const DEFAULT_TLS_LISTEN: &str = "0.0.0.0:8443";
/// Address of the admin API when `[server] admin` sets none: loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Environment variable holding the admin token when `token_env` is not set.
pub const DEFAULT_ADMIN_TOKEN_ENV: &str = "OUTPOST_ADMIN_TOKEN";

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Where the pair is written, for errors about the files' contents.
    pub at: Location,
}

/// `[server] tls`: the HTTPS listener and its default certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListener {
    pub listen: SocketAddr,
    /// Served when no tenant certificate matches the client's SNI name.
    pub default_certificate: CertificateFiles,
}

/// `[server] admin`: the admin API's listener and bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Read from the environment variable `token_env` at load.
    pub token: Secret,
    pub token_env: String,
}

/// Limits on client connections, so slow or hostile clients cannot hold the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open client connections across both listeners; past it new ones wait in the
    /// kernel's backlog.
    pub max_connections: u32,
    /// A client must send a request's whole head within this time (slowloris).
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// The largest request head (request line and headers) accepted.
    pub max_header_size: u64,
    /// How much of a request body is read before its guest is admitted (0: none), so a
    /// slow body waits on the node and not in a tenant's concurrency slot.
    pub body_prefetch: u64,
    /// A client must send that much of its body (or all of it) within this time.
    pub body_timeout: Duration,
    /// A client must take some of a response's bytes within this time, or that response
    /// is cut off (its HTTP/2 stream reset, its HTTP/1.1 connection closed).
    pub send_timeout: Duration,
    /// Requests open at once across the node, from their start until their response's
    /// last byte is handed to the connection; past it new ones get `503`.
    pub max_open_requests: u32,
    /// After SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_size: 64 << 10,
            body_prefetch: 64 << 10,
            body_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            max_open_requests: 20_000,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl Validator<'_> {
    pub(crate) fn tls_listener(&mut self, raw: Spanned<RawTlsListener>) -> Option<TlsListener> {
        let at = self.at(raw.span());
        let raw = raw.into_inner();
        let listen = self.socket_address(raw.listen, "server.tls.listen", DEFAULT_TLS_LISTEN)?;
        Some(TlsListener {
            listen,
            default_certificate: CertificateFiles {
                cert: self.resolve(raw.cert.get_ref()),
                key: self.resolve(raw.key.get_ref()),
                at,
            },
        })
    }

    pub(crate) fn certificate(&self, raw: Spanned<RawCertificate>) -> CertificateFiles {
        let at = self.at(raw.span());
        let raw = raw.into_inner();
        CertificateFiles {
            cert: self.resolve(raw.cert.get_ref()),
            key: self.resolve(raw.key.get_ref()),
            at,
        }
    }

    pub(crate) fn admin(&mut self, raw: Spanned<RawAdmin>) -> Option<AdminConfig> {
        let span = raw.span();
        let raw = raw.into_inner();
        let listen =
            self.socket_address(raw.listen, "server.admin.listen", DEFAULT_ADMIN_LISTEN)?;
        let token_env = raw
            .token_env
            .map_or(DEFAULT_ADMIN_TOKEN_ENV.to_string(), Spanned::into_inner);
        match std::env::var(&token_env) {
            Ok(token) if token.trim().len() >= 16 => Some(AdminConfig {
                listen,
                token: Secret::new(token.trim().to_string()),
                token_env,
            }),
            Ok(_) => {
                self.errors.push(ConfigError::new(self.at(span), format!(
                    "the admin token in `{token_env}` is shorter than 16 characters; use a long random value (openssl rand -hex 32)"
                )).key("server.admin"));
                None
            }
            Err(_) => {
                self.errors.push(ConfigError::new(self.at(span), format!(
                    "environment variable `{token_env}` is not set; the admin API needs a bearer token from it"
                )).key("server.admin"));
                None
            }
        }
    }

    pub(crate) fn connection_limits(&mut self, raw: &mut RawServer) -> ConnectionLimits {
        let mut limits = ConnectionLimits::default();
        let mut count = |value: Option<Spanned<u32>>, key: &str, into: &mut u32| {
            let Some(value) = value else { return };
            if (1..=1_000_000).contains(value.get_ref()) {
                *into = value.into_inner();
            } else {
                let error = self.error(&value, key, "must be between 1 and 1000000");
                self.errors.push(error);
            }
        };
        count(
            raw.max_connections.take(),
            "server.max_connections",
            &mut limits.max_connections,
        );
        count(
            raw.max_open_requests.take(),
            "server.max_open_requests",
            &mut limits.max_open_requests,
        );
        let mut duration = |value: Option<Spanned<String>>, key: &str, into: &mut Duration| {
            let Some(value) = value else { return };
            match parse_duration(value.get_ref()) {
                Ok(d) if !d.is_zero() => *into = d,
                Ok(_) => {
                    let error = self.error(&value, key, "must be above 0");
                    self.errors.push(error);
                }
                Err(message) => {
                    let error = self.error(&value, key, message);
                    self.errors.push(error);
                }
            }
        };
        duration(
            raw.header_timeout.take(),
            "server.header_timeout",
            &mut limits.header_timeout,
        );
        duration(
            raw.idle_timeout.take(),
            "server.idle_timeout",
            &mut limits.idle_timeout,
        );
        duration(
            raw.body_timeout.take(),
            "server.body_timeout",
            &mut limits.body_timeout,
        );
        duration(
            raw.send_timeout.take(),
            "server.send_timeout",
            &mut limits.send_timeout,
        );
        duration(
            raw.shutdown_grace.take(),
            "server.shutdown_grace",
            &mut limits.shutdown_grace,
        );
        if let Some(max) = raw.max_header_size.take() {
            match size(max.get_ref()) {
                // hyper needs room for at least one read buffer.
                Ok(bytes) if (8192..=16 << 20).contains(&bytes) => limits.max_header_size = bytes,
                Ok(_) => {
                    let error = self.error(
                        &max,
                        "server.max_header_size",
                        "must be between 8KiB and 16MiB",
                    );
                    self.errors.push(error);
                }
                Err(message) => {
                    let error = self.error(&max, "server.max_header_size", message);
                    self.errors.push(error);
                }
            }
        }
        if let Some(prefetch) = raw.body_prefetch.take() {
            match size(prefetch.get_ref()) {
                Ok(bytes) if bytes <= 16 << 20 => limits.body_prefetch = bytes,
                Ok(_) => {
                    let error = self.error(
                        &prefetch,
                        "server.body_prefetch",
                        "must be at most 16MiB (0 turns it off)",
                    );
                    self.errors.push(error);
                }
                Err(message) => {
                    let error = self.error(&prefetch, "server.body_prefetch", message);
                    self.errors.push(error);
                }
            }
        }
        limits
    }

    fn socket_address(
        &mut self,
        value: Option<Spanned<String>>,
        key: &str,
        default: &str,
    ) -> Option<SocketAddr> {
        let Some(value) = value else {
            return Some(default.parse().expect("default addresses parse"));
        };
        match value.get_ref().parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                let error = self.error(&value, key, format!(
                    "`{}` is not a socket address; write it like \"0.0.0.0:8443\" or \"[::]:8443\"",
                    value.get_ref()
                ));
                self.errors.push(error);
                None
            }
        }
    }
}
