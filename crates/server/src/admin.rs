//! The admin API, on its own listener (loopback by default): health, readiness, tenant
//! status, deploys, rollbacks, reloads and Prometheus metrics.
//!
//! `/healthz` and `/readyz` are open (load balancers probe them); everything else needs
//! `Authorization: Bearer <token>`, compared in constant time. A refused request changes
//! nothing.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use outpost_config::Secret;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::control::{Control, ControlError};
use crate::metrics::Metrics;

/// The largest component a deploy may upload.
pub const MAX_COMPONENT_BYTES: usize = 256 << 20;

/// What the admin API serves from; `control` is set once every tenant is loaded.
pub struct Admin {
    token: Secret,
    control: OnceLock<Arc<Control>>,
    metrics: OnceLock<Arc<Metrics>>,
    /// Says why the node is degraded (serving, but missing something), if it is.
    degraded: OnceLock<Degraded>,
}

/// Why a serving node is degraded right now (`None`: it is not).
pub type Degraded = Box<dyn Fn() -> Option<String> + Send + Sync>;

impl Admin {
    pub fn new(token: Secret) -> Arc<Admin> {
        Arc::new(Admin {
            token,
            control: OnceLock::new(),
            metrics: OnceLock::new(),
            degraded: OnceLock::new(),
        })
    }

    /// How `/readyz` learns that the node serves but lacks something (its fleet's hub).
    pub fn report_degraded(&self, degraded: Degraded) {
        let _ = self.degraded.set(degraded);
    }

    /// Marks the node ready: every tenant is compiled and serving.
    pub fn ready(&self, control: Arc<Control>, metrics: Arc<Metrics>) {
        let _ = self.control.set(control);
        let _ = self.metrics.set(metrics);
    }

    /// Serves the admin API on `listener` until `shutdown` turns true.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let (stream, _) = tokio::select! {
                _ = crate::stopped(&mut shutdown) => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!("admin accept failed: {error}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let admin = admin.clone();
                    async move { Ok::<_, std::convert::Infallible>(admin.respond(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// Answers one admin request: the listener's service, and the admin fuzz target's
    /// way in (any body type, so a test can hand it bytes).
    pub async fn respond<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["healthz"]) => return text(StatusCode::OK, "ok\n"),
            (&Method::GET, ["readyz"]) => {
                // Degraded still answers 200: the node serves its tenants, and a load
                // balancer should keep sending it traffic.
                let degraded = self.degraded.get().and_then(|why| why());
                return match (self.control.get(), degraded) {
                    (Some(_), Some(why)) => text(StatusCode::OK, format!("degraded: {why}\n")),
                    (Some(_), None) => text(StatusCode::OK, "ready\n"),
                    (None, _) => text(StatusCode::SERVICE_UNAVAILABLE, "loading tenants\n"),
                };
            }
            _ => {}
        }
        if !self.authorized(&request) {
            tracing::warn!(%method, path, "admin request without a valid token");
            let mut response = json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({ "error": "a valid bearer token is required" }),
            );
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
        let Some(control) = self.control.get() else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "loading tenants\n");
        };
        match (&method, segments.as_slice()) {
            (&Method::GET, ["metrics"]) => match self.metrics.get() {
                Some(metrics) => {
                    let mut response = text(StatusCode::OK, metrics.render());
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    response
                }
                None => text(StatusCode::SERVICE_UNAVAILABLE, "loading tenants\n"),
            },
            (&Method::GET, ["fleet"]) => match control.fleet_status().await {
                Some(Ok(status)) => json(StatusCode::OK, &status),
                Some(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
                None => error(
                    StatusCode::NOT_FOUND,
                    "this node is not one of a fleet (no [fleet] in its config)".into(),
                ),
            },
            (&Method::GET, ["tenants"]) => json(
                StatusCode::OK,
                &serde_json::json!({
                    "tenants": control.status(),
                    "reload_error": control.reload_error(),
                }),
            ),
            (&Method::GET, ["tenants", name]) => {
                match control.status().into_iter().find(|t| t.name == *name) {
                    Some(status) => json(StatusCode::OK, &status),
                    None => error(StatusCode::NOT_FOUND, format!("no tenant `{name}`")),
                }
            }
            (&Method::PUT, ["tenants", name, "component"]) => {
                let name = name.to_string();
                let body = Limited::new(request.into_body(), MAX_COMPONENT_BYTES);
                let wasm = match body.collect().await {
                    Ok(body) => body.to_bytes().to_vec(),
                    Err(e) => {
                        return error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!(
                                "cannot read the component (at most {MAX_COMPONENT_BYTES} bytes): {e}"
                            ),
                        );
                    }
                };
                match control.deploy(&name, wasm).await {
                    Ok(version) => json(
                        StatusCode::OK,
                        &serde_json::json!({ "tenant": name, "deployed": version }),
                    ),
                    Err(e) => control_error(e),
                }
            }
            (&Method::POST, ["tenants", name, "rollback"]) => match control.rollback(name).await {
                Ok(version) => json(
                    StatusCode::OK,
                    &serde_json::json!({ "tenant": name, "serving": version }),
                ),
                Err(e) => control_error(e),
            },
            (&Method::POST, ["tenants", name, "purge"]) => {
                let body = Limited::new(request.into_body(), 1 << 20);
                let body = match body.collect().await {
                    Ok(body) => body.to_bytes(),
                    Err(e) => {
                        return error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("cannot read the purge request: {e}"),
                        );
                    }
                };
                let purge = match parse_purge(&body) {
                    Ok(purge) => purge,
                    Err(message) => return error(StatusCode::BAD_REQUEST, message),
                };
                match control.purge_in_fleet(name, &body).await {
                    Ok(true) => {
                        return json(
                            StatusCode::OK,
                            &serde_json::json!({ "tenant": name, "purged": format!("{purge:?}"), "fleet": true }),
                        );
                    }
                    Ok(false) => {}
                    Err(e) => return control_error(e),
                }
                match control.purge(name, &purge) {
                    Ok(()) => json(
                        StatusCode::OK,
                        &serde_json::json!({ "tenant": name, "purged": format!("{purge:?}") }),
                    ),
                    Err(e) => control_error(e),
                }
            }
            (&Method::POST, ["reload"]) => match control.reload().await {
                Ok(summary) => json(StatusCode::OK, &serde_json::json!({ "reloaded": summary })),
                Err(reason) => error(StatusCode::UNPROCESSABLE_ENTITY, reason),
            },
            _ => error(
                StatusCode::NOT_FOUND,
                format!("no admin endpoint {method} {path}"),
            ),
        }
    }

    fn authorized<B>(&self, request: &Request<B>) -> bool {
        let Some(value) = request.headers().get(http::header::AUTHORIZATION) else {
            return false;
        };
        let Some(token) = value.as_bytes().strip_prefix(b"Bearer ") else {
            return false;
        };
        token.ct_eq(self.token.expose().as_bytes()).into()
    }
}

fn control_error(e: ControlError) -> Response<Full<Bytes>> {
    let status = match e {
        ControlError::NoSuchTenant(_) => StatusCode::NOT_FOUND,
        ControlError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ControlError::NothingToRollBack(_) | ControlError::NoCache(_) => StatusCode::CONFLICT,
        ControlError::Storage { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        ControlError::Fleet { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

fn error(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = status;
    response
}

/// What to purge: `{"everything": true}`, `{"urls": [...]}`, `{"prefixes": [...]}` or
/// `{"tags": [...]}` (URLs and prefixes as `https://host/path` or `/path`).
pub(crate) fn parse_purge(body: &[u8]) -> Result<outpost_cache::Purge, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        #[serde(default)]
        everything: bool,
        urls: Option<Vec<String>>,
        prefixes: Option<Vec<String>>,
        tags: Option<Vec<String>>,
    }
    let usage = "send one of {\"everything\": true}, {\"urls\": [..]}, {\"prefixes\": [..]}, {\"tags\": [..]}";
    let request: Request =
        serde_json::from_slice(body).map_err(|e| format!("bad purge request ({e}); {usage}"))?;
    match (
        request.everything,
        request.urls,
        request.prefixes,
        request.tags,
    ) {
        (true, None, None, None) => Ok(outpost_cache::Purge::Everything),
        (false, Some(urls), None, None) if !urls.is_empty() => {
            outpost_cache::Purge::parse_urls(&urls)
        }
        (false, None, Some(prefixes), None) if !prefixes.is_empty() => {
            outpost_cache::Purge::parse_prefixes(&prefixes)
        }
        (false, None, None, Some(tags)) if !tags.is_empty() => {
            Ok(outpost_cache::Purge::parse_tags(&tags))
        }
        _ => Err(usage.to_string()),
    }
}
