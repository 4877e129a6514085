//! One tenant's outbound client: its listed origins, a connection pool through the
//! [`GuardedConnector`], timeouts and the response-size cap.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use outpost_config::Origin;
use wasmtime_wasi_http::{Error, WasiBody};

use super::drain::{Drain, DrainedOnDrop};
use super::guard::{GuardedConnector, Refused};

/// One tenant's outbound access: its origins and its connection pool.
pub struct OutboundClient {
    origins: Vec<Origin>,
    client: Client<HttpsConnector<GuardedConnector>, WasiBody>,
    /// Longest a subrequest may wait for its response head.
    timeout: Duration,
    /// Subrequests per request.
    pub(super) max_subrequests: u32,
    /// Bytes of one response body a guest may read.
    max_body: u64,
}

impl OutboundClient {
    /// The client for `origins`, under the tenant's subrequest limits.
    pub fn new(origins: Vec<Origin>, limits: &outpost_config::Limits) -> Arc<OutboundClient> {
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
        Arc::new(OutboundClient {
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
    pub(super) async fn send(
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
            let body = DrainedOnDrop::new(body, Drain::RESPONSE);
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
        if cause.downcast_ref::<hyper::Error>().is_some() {
            return Error::InternalError(Some(with_causes(cause)));
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
    Error::InternalError(Some(with_causes(&error)))
}

/// `error: its cause: its cause's cause`, as hyper's own text stops at the first.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
