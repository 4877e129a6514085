//! WebSocket upgrades: a request asking for one runs through the tenant's guest as any
//! other; when the answer carries a socket a Durable Object accepted
//! (`outpost-websocket`), the node completes the handshake itself and hands the
//! connection to the runtime, which turns its messages into the object's events.

use std::net::SocketAddr;

use http::{HeaderValue, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use outpost_runtime::{OBJECT_SOCKET_HEADER as SOCKET_HEADER, WasiBody};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::{Node, responses};

/// Tells the guest a request is a WebSocket upgrade in a header that survives its
/// forwarding to an object (`upgrade` is hop-by-hop); a client's own is removed.
pub(crate) const UPGRADE_MARK: &str = "outpost-upgrade";

pub(crate) fn mark_upgrade<B>(request: &mut Request<B>) {
    request.headers_mut().remove(UPGRADE_MARK);
    if is_upgrade(request) {
        request
            .headers_mut()
            .insert(UPGRADE_MARK, HeaderValue::from_static("websocket"));
    }
}

/// Whether `request` is an HTTP/1.1 WebSocket upgrade (RFC 6455 §4.1).
pub(crate) fn is_upgrade<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    let has = |name: header::HeaderName, wanted: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case(wanted))
            })
        })
    };
    request.method() == http::Method::GET
        && request.version() == http::Version::HTTP_11
        && has(header::UPGRADE, "websocket")
        && has(header::CONNECTION, "upgrade")
        && headers.contains_key(header::SEC_WEBSOCKET_KEY)
        && headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13")
}

impl Node {
    /// Runs an upgrade request through tenant `index`'s guest, then completes the
    /// upgrade if an object of the tenant accepted the socket.
    pub(crate) async fn run_upgrade(
        &self,
        index: usize,
        id: &str,
        mut request: Request<WasiBody>,
        peer: SocketAddr,
    ) -> http::Response<WasiBody> {
        let tenant = self.tenants[index].clone();
        let key = request.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
        let upgrade = hyper::upgrade::on(&mut request);
        let mut response = self.run(index, id, request, peer).await;
        let Some(socket) = response.headers_mut().remove(SOCKET_HEADER) else {
            // The guest answered without a socket: its answer stands.
            return response;
        };
        let name = tenant.info().name.clone();
        let directory = tenant.object_directory();
        let claimed = socket
            .to_str()
            .ok()
            .zip(directory.as_ref())
            .and_then(|(socket, directory)| directory.claim_socket(&name, socket));
        let (Some(claimed), Some(directory), Some(key)) = (claimed, directory, key) else {
            tracing::warn!(tenant = %name, request_id = id, "the guest's response names a socket no object of the tenant accepted");
            return responses::text(
                StatusCode::BAD_GATEWAY,
                "the response names a WebSocket no object accepted",
            );
        };
        let request_id = id.to_string();
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => directory.run_socket(claimed, TokioIo::new(upgraded)).await,
                Err(error) => {
                    tracing::info!(tenant = %name, request_id, "websocket upgrade not completed: {error}");
                    directory.abandon_socket(claimed);
                }
            }
        });
        let mut switching = responses::text(StatusCode::SWITCHING_PROTOCOLS, "");
        switching.headers_mut().clear();
        let headers = switching.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        switching
    }
}
