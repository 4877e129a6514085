//! Outbound HTTP (`wasi:http/outgoing-handler`, `wasi:http/client`): a guest reaches only
//! the origins its tenant lists in `outbound`. The check runs twice: on the request's
//! origin, and in the connector on the addresses DNS returned, so a listed *name* that
//! resolves to a loopback, private or link-local address is refused (and the connection
//! goes to the address that was checked: no re-resolution to rebind around it). Only an
//! origin that names such an address as an IP literal may reach it.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use outpost_config::Origin;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, WasiBody};

/// How long connecting to an origin may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One tenant's outbound access: its origins and its connection pool.
pub(crate) struct Outbound {
    origins: Vec<Origin>,
    client: Client<HttpsConnector<GuardedConnector>, WasiBody>,
    /// Longest a subrequest may wait for its response head.
    timeout: Duration,
    /// Subrequests per request.
    pub(crate) max_subrequests: u32,
    /// Bytes of one response body a guest may read.
    max_body: u64,
}

impl Outbound {
    pub(crate) fn new(origins: Vec<Origin>, limits: &outpost_config::Limits) -> Arc<Outbound> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // The system's roots too, for origins behind a private CA the operator trusts.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(GuardedConnector);
        Arc::new(Outbound {
            origins,
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout: limits.timeout,
            max_subrequests: limits.subrequests,
            max_body: limits.subrequest_body,
        })
    }

    /// Whether `uri` is on one of the listed origins.
    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else {
            return false;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let scheme = uri.scheme_str().unwrap_or("https");
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        self.origins
            .iter()
            .any(|o| o.scheme == scheme && o.host == host && o.port == port)
    }

    /// Sends `request` if its origin is listed.
    pub(crate) async fn send(
        self: Arc<Self>,
        request: http::Request<WasiBody>,
        first_byte_timeout: Option<Duration>,
    ) -> Result<http::Response<WasiBody>, Error> {
        if !self.allows(request.uri()) {
            return Err(Error::HttpRequestDenied);
        }
        let timeout = first_byte_timeout.unwrap_or(self.timeout).min(self.timeout);
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| Error::HttpResponseTimeout)?
            .map_err(client_error)?;
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_body) {
            return Err(Error::HttpResponseBodySize(declared));
        }
        let max = self.max_body;
        Ok(response.map(|body| {
            http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX))
                .map_err(move |e| match e.downcast::<hyper::Error>() {
                    Ok(hyper) => Error::from(*hyper),
                    Err(_) => Error::HttpResponseBodySize(Some(max)),
                })
                .boxed_unsync()
        }))
    }
}

/// Maps the pool's error to what wasi:http reports, keeping the connector's reason.
fn client_error(error: hyper_util::client::legacy::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return match refused {
                Refused::Private { .. } => Error::DestinationIpProhibited,
                Refused::Dns(_) => Error::DestinationNotFound,
                Refused::Timeout => Error::ConnectionTimeout,
                Refused::Connect(_) => Error::ConnectionRefused,
            };
        }
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            return Error::InternalError(Some(hyper.to_string()));
        }
        if let Some(tls) = tls_error(cause) {
            tracing::warn!(error = %tls, "TLS handshake with an origin failed");
            return match tls {
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                    Error::TlsCertificateError
                }
                rustls::Error::AlertReceived(alert) => Error::TlsAlertReceived {
                    alert_id: Some(u8::from(*alert)),
                    alert_message: Some(format!("{alert:?}")),
                },
                _ => Error::TlsProtocolError,
            };
        }
        source = cause.source();
    }
    if error.is_connect() {
        return Error::ConnectionRefused;
    }
    Error::InternalError(Some(error.to_string()))
}

/// The rustls error in `error`, looking through io::Errors, whose source() skips the
/// error they wrap (hyper-rustls wraps tokio-rustls's io::Error in another one).
fn tls_error<'e>(mut error: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    loop {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = error.downcast_ref::<std::io::Error>()?.get_ref()?;
        error = inner;
    }
}

/// Why the connector would not connect.
#[derive(Debug, thiserror::Error)]
enum Refused {
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
struct GuardedConnector;

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
