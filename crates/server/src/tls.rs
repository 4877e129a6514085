//! TLS for the HTTPS listener: rustls with its safe defaults (TLS 1.2 and 1.3, forward-
//! secret AEAD suites only), HTTP/2 and HTTP/1.1 by ALPN, and certificates chosen by SNI.
//!
//! The default certificate (`[server] tls`) answers names no tenant claims; a tenant with
//! `tls = { cert, key }` gets its own for its host routes. Every certificate is checked
//! when it is loaded — the key matches, it is valid now, and a tenant's covers each of its
//! host routes — and the set is swapped whole on reload, so a bad file leaves the old
//! certificates serving.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use outpost_config::{CertificateFiles, Config, HostPattern};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate that cannot be used, with where the config names it.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {owner}: {reason}")]
pub struct CertificateError {
    at: outpost_config::Location,
    owner: String,
    reason: String,
}

/// The certificates in force.
struct CertificateSet {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By suffix with its leading dot (`.example.com` for `*.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

/// Picks the certificate for a client's SNI name; swapped whole on reload.
pub struct SniResolver {
    current: ArcSwap<CertificateSet>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SniResolver")
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.current.load();
        let Some(name) = hello.server_name() else {
            return Some(set.default.clone());
        };
        let name = name.to_ascii_lowercase();
        if let Some(key) = set.exact.get(&name) {
            return Some(key.clone());
        }
        if let Some(dot) = name.find('.')
            && let Some(key) = set.wildcard.get(&name[dot..])
        {
            return Some(key.clone());
        }
        Some(set.default.clone())
    }
}

impl SniResolver {
    /// Loads and checks every certificate `config` names; `None` without `[server] tls`.
    pub fn load(config: &Config) -> Result<Option<Arc<SniResolver>>, Vec<CertificateError>> {
        let Some(set) = certificate_set(config)? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(SniResolver {
            current: ArcSwap::from_pointee(set),
        })))
    }

    /// Replaces the certificates with those of `config`; on any error keeps the old ones.
    pub fn reload(&self, config: &Config) -> Result<(), Vec<CertificateError>> {
        if let Some(set) = certificate_set(config)? {
            self.current.store(Arc::new(set));
        }
        Ok(())
    }
}

/// The acceptor for the HTTPS listener.
pub fn acceptor(resolver: Arc<SniResolver>) -> tokio_rustls::TlsAcceptor {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificate_set(config: &Config) -> Result<Option<CertificateSet>, Vec<CertificateError>> {
    let Some(tls) = &config.server.tls else {
        return Ok(None);
    };
    let mut errors = Vec::new();
    let default = load_certificate(&tls.default_certificate, "server.tls", &[]);
    let mut set = CertificateSet {
        default: match default {
            Ok(key) => key,
            Err(error) => {
                errors.push(error);
                return Err(errors);
            }
        },
        exact: HashMap::new(),
        wildcard: HashMap::new(),
    };
    for tenant in &config.tenants {
        let Some(files) = &tenant.tls else { continue };
        let hosts: Vec<&HostPattern> = tenant
            .routes
            .iter()
            .map(|r| &r.host)
            .filter(|h| **h != HostPattern::Any)
            .collect();
        let owner = format!("tenant `{}`: `tls`", tenant.name);
        if hosts.is_empty() {
            errors.push(CertificateError {
                at: files.at.clone(),
                owner,
                reason: "the tenant has no host routes for its certificate to serve; add one like \"shop.example.com\"".into(),
            });
            continue;
        }
        match load_certificate(files, &owner, &hosts) {
            Ok(key) => {
                for host in hosts {
                    match host {
                        HostPattern::Exact(name) => set.exact.insert(name.clone(), key.clone()),
                        HostPattern::Wildcard(suffix) => {
                            set.wildcard.insert(suffix.clone(), key.clone())
                        }
                        HostPattern::Any => None,
                    };
                }
            }
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(Some(set))
    } else {
        Err(errors)
    }
}

/// Reads a chain and key and checks them: the key matches, the leaf is valid now and
/// covers every host in `hosts`.
fn load_certificate(
    files: &CertificateFiles,
    owner: &str,
    hosts: &[&HostPattern],
) -> Result<Arc<CertifiedKey>, CertificateError> {
    let fail = |reason: String| CertificateError {
        at: files.at.clone(),
        owner: owner.to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| {
            fail(format!(
                "cannot read certificates from {}: {e}",
                files.cert.display()
            ))
        })?;
    let Some(leaf) = chain.first() else {
        return Err(fail(format!(
            "{} holds no PEM certificate",
            files.cert.display()
        )));
    };
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        fail(format!(
            "cannot read a private key from {}: {e}",
            files.key.display()
        ))
    })?;
    let signing_key = provider().key_provider.load_private_key(key).map_err(|e| {
        fail(format!(
            "unusable private key in {}: {e}",
            files.key.display()
        ))
    })?;
    let certified = CertifiedKey::new(chain.clone(), signing_key);
    certified.keys_match().map_err(|e| {
        fail(format!(
            "the key in {} does not belong to the certificate in {}: {e}",
            files.key.display(),
            files.cert.display()
        ))
    })?;

    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| {
        fail(format!(
            "cannot parse the certificate in {}: {e}",
            files.cert.display()
        ))
    })?;
    let validity = parsed.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > validity.not_after {
        return Err(fail(format!(
            "the certificate in {} expired on {}; renew it",
            files.cert.display(),
            validity.not_after
        )));
    }
    if now < validity.not_before {
        return Err(fail(format!(
            "the certificate in {} is not valid before {}",
            files.cert.display(),
            validity.not_before
        )));
    }
    let names: Vec<String> = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => {
                        Some(dns.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    for host in hosts {
        let wanted = match host {
            HostPattern::Exact(name) => name.clone(),
            HostPattern::Wildcard(suffix) => format!("*{suffix}"),
            HostPattern::Any => continue,
        };
        if !names.iter().any(|name| covers(name, &wanted)) {
            return Err(fail(format!(
                "the certificate in {} is for {} and does not cover `{wanted}`",
                files.cert.display(),
                if names.is_empty() {
                    "no DNS names".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
    }
    Ok(Arc::new(certified))
}

/// Whether a certificate name covers `host` (`*.example.com` covers `a.example.com` and
/// the route `*.example.com`).
fn covers(name: &str, host: &str) -> bool {
    if name == host {
        return true;
    }
    match (name.strip_prefix('*'), host.find('.')) {
        (Some(suffix), Some(dot)) => !host.starts_with('*') && &host[dot..] == suffix,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("shop.example.com", "shop.example.com"));
        assert!(covers("*.example.com", "shop.example.com"));
        assert!(covers("*.example.com", "*.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("shop.example.com", "*.example.com"));
    }
}
