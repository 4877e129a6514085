//! A real HTTP origin for the guests to call: records every request it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// What an origin received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When it arrived, by the origin's clock.
    pub at: Instant,
    pub method: String,
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Response headers, as written in a test.
pub type Headers = &'static [(&'static str, &'static str)];

/// How an origin answers.
#[derive(Default, Clone)]
pub struct Behaviour {
    /// Wait this long before answering.
    pub delay: Duration,
    /// Paths answered with 500.
    pub failing: &'static [&'static str],
    /// Paths answered 200 with this JSON body.
    pub documents: Vec<(&'static str, String)>,
    /// Serve HTTPS with this configuration instead of plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The status of the default answer (201 unless set).
    pub status: Option<u16>,
    /// Headers added to every answer.
    pub headers: Vec<(&'static str, &'static str)>,
    /// Paths answered with this status and these headers (instead of 201 and `headers`).
    pub by_path: Vec<(&'static str, u16, Headers)>,
    /// While set, every path is answered with 500.
    pub failing_now: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// A real HTTP origin on an ephemeral port that records every request and answers
/// `201 <name> saw <method> <path>` with an `x-origin` header (unless its
/// [`Behaviour`] says otherwise for the path).
pub struct Origin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    tls: bool,
}

impl Origin {
    pub async fn start(name: &'static str) -> Origin {
        Origin::start_with(name, Behaviour::default()).await
    }

    pub async fn start_with(name: &'static str, behaviour: Behaviour) -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let tls_enabled = behaviour.tls.is_some();
        let tls = behaviour.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let behaviour = Arc::new(behaviour);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (record, behaviour, tls) = (record.clone(), behaviour.clone(), tls.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let (record, behaviour) = (record.clone(), behaviour.clone());
                            async move {
                                let at = Instant::now();
                                let (parts, body) = request.into_parts();
                                let body = body.collect().await?.to_bytes();
                                let path = parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.as_str().to_string())
                                    .unwrap_or_default();
                                let answer = format!("{name} saw {} {path}", parts.method);
                                let failed = behaviour.failing.contains(&parts.uri.path())
                                    || behaviour.failing_now.as_ref().is_some_and(|now| {
                                        now.load(std::sync::atomic::Ordering::SeqCst)
                                    });
                                let document = behaviour
                                    .documents
                                    .iter()
                                    .find(|(p, _)| *p == parts.uri.path())
                                    .map(|(_, body)| body.clone());
                                record.lock().expect("lock").push(Seen {
                                    at,
                                    method: parts.method.to_string(),
                                    path_and_query: path,
                                    headers: parts.headers,
                                    body,
                                });
                                tokio::time::sleep(behaviour.delay).await;
                                let mut response =
                                    http::Response::builder().header("x-origin", name);
                                let special = behaviour
                                    .by_path
                                    .iter()
                                    .find(|(p, _, _)| *p == parts.uri.path());
                                let headers = special.map_or(&behaviour.headers[..], |s| s.2);
                                for (header, value) in headers {
                                    response = response.header(*header, *value);
                                }
                                let response = match document {
                                    Some(body) => response
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(body))),
                                    None => response
                                        .status(if failed {
                                            500
                                        } else if let Some(special) = special {
                                            special.1
                                        } else {
                                            behaviour.status.unwrap_or(201)
                                        })
                                        .body(Full::new(Bytes::from(answer))),
                                };
                                Ok::<_, hyper::Error>(response.expect("response"))
                            }
                        });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => http.serve_connection(TokioIo::new(stream), service).await,
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => {
                                http.serve_connection(TokioIo::new(stream), service).await
                            }
                            Err(_) => return,
                        },
                    };
                });
            }
        });
        Origin {
            addr,
            seen,
            tls: tls_enabled,
        }
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// `http://127.0.0.1:PORT` (`https://` when it serves TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}
