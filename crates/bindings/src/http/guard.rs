//! The SSRF guard: resolves, refuses non-public addresses, and connects to the address it
//! checked (no re-resolution, so DNS cannot rebind around the check). Only an origin that
//! names such an address as an IP literal may reach it.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long connecting to an origin may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the connector would not connect.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    #[error(
        "`{host}` resolves to {ip}, a non-public address; list an origin naming that address to allow it"
    )]
    Private { host: String, ip: IpAddr },
    #[error("cannot resolve: {0}")]
    Dns(std::io::Error),
    #[error("connecting timed out")]
    Timeout,
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
}

/// Resolves, checks the addresses, connects to a checked one.
#[derive(Clone)]
pub(super) struct GuardedConnector;

impl tower_service::Service<http::Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = Refused;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Refused>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("http") {
                    80
                } else {
                    443
                });
            let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                // An IP literal passed the origin check, so the operator named it.
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => {
                    let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                        .await
                        .map_err(Refused::Dns)?
                        .collect();
                    if let Some(bad) = found.iter().find(|a| !is_public(a.ip())) {
                        return Err(Refused::Private { host, ip: bad.ip() });
                    }
                    found
                }
            };
            let mut last = None;
            for addr in addrs {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(TokioIo::new(stream));
                    }
                    Ok(Err(e)) => last = Some(Refused::Connect(e)),
                    Err(_) => last = Some(Refused::Timeout),
                }
            }
            Err(last.unwrap_or(Refused::Dns(std::io::Error::other("no addresses"))))
        })
    }
}

/// Whether `ip` is on the public internet: not loopback, private, link-local, CGNAT,
/// unique-local, multicast, documentation or unspecified.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
