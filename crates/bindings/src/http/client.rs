//! One tenant's outbound client: its listed origins, a connection pool through the
//! [`GuardedConnector`], timeouts and the response-size cap.

use std::sync::Arc;
use std::time::Duration;

use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use outpost_config::Origin;
use wasmtime_wasi_http::{Error, WasiBody};

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
            let body = DrainedOnDrop { body: Some(body) };
            http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX))
                .map_err(move |e| match e.downcast::<hyper::Error>() {
                    Ok(hyper) => Error::from(*hyper),
                    Err(_) => Error::HttpResponseBodySize(Some(max)),
                })
                .boxed_unsync()
        }))
    }
}

/// At most this much of an abandoned response body is read so its connection can go
/// back to the pool.
const DRAIN_MAX_BYTES: usize = 64 * 1024;
/// How long reading an abandoned response body may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A response body that, if the guest drops it before its end (a fragment answered 500,
/// a HEAD-like use of GET), reads the rest in the background, up to [`DRAIN_MAX_BYTES`].
///
/// Without this, hyper notices the abandoned body only when its connection task next
/// runs; until then the pool can hand the connection to the guest's next request,
/// which then fails with "connection reset" (seen as a flaky fragment fallback).
/// Draining ends the message cleanly, so the connection is reused only once it is idle.
struct DrainedOnDrop {
    body: Option<hyper::body::Incoming>,
}

impl http_body::Body for DrainedOnDrop {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let frame = std::pin::Pin::new(body).poll_frame(cx);
        if let std::task::Poll::Ready(None) = frame {
            self.body = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.as_ref().map_or_else(
            || http_body::SizeHint::with_exact(0),
            |body| body.size_hint(),
        )
    }
}

impl Drop for DrainedOnDrop {
    fn drop(&mut self) {
        let Some(mut body) = self.body.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drain = async {
                let mut read = 0;
                while read <= DRAIN_MAX_BYTES {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            read += frame.data_ref().map_or(0, bytes::Bytes::len);
                        }
                        _ => return,
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
        });
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
