//! The WebSockets of objects, hibernation style: the node holds each connection in a
//! task of its own and turns what arrives into events of the object that accepted it,
//! so an object whose sockets are idle can leave memory and be woken by the next
//! message with its sockets, tags and attachments intact.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use outpost_bindings::objects::{
    CLOSE_CODE_HEADER, EVENT_HEADER, EVENT_SOCKET_HEADER, MESSAGE_KIND_HEADER, SocketMessage,
    SocketOwner,
};
use outpost_bindings::{EdgeError, EdgeResult};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::{ObjectDirectory, ObjectKey};

/// Bytes a socket reads at once (and holds while idle).
const SOCKET_READ_BUFFER: usize = 4096;
/// Messages queued for one socket and not yet written; more are refused to the guest.
const OUTBOX_DEPTH: usize = 256;
/// An accepted socket whose upgrade the node never completes is forgotten after this.
const PENDING_FOR: Duration = Duration::from_secs(30);

enum Outgoing {
    Message(Message),
    Close(u16, String),
}

struct Socket {
    tags: Vec<String>,
    attachment: Option<Vec<u8>>,
    outbox: mpsc::Sender<Outgoing>,
    /// Until the node completes the upgrade: the outbox's reading end and when.
    pending: Option<(mpsc::Receiver<Outgoing>, Instant)>,
}

#[derive(Default)]
struct Registry {
    by_object: HashMap<ObjectKey, BTreeMap<String, Socket>>,
    per_tenant: HashMap<Arc<str>, u32>,
}

impl Registry {
    fn remove(&mut self, key: &ObjectKey, socket: &str) {
        let Some(sockets) = self.by_object.get_mut(key) else {
            return;
        };
        if sockets.remove(socket).is_some()
            && let Some(count) = self.per_tenant.get_mut(&key.tenant)
        {
            *count = count.saturating_sub(1);
        }
        if sockets.is_empty() {
            self.by_object.remove(key);
        }
    }

    fn purge_pending(&mut self) {
        let stale: Vec<(ObjectKey, String)> = self
            .by_object
            .iter()
            .flat_map(|(key, sockets)| {
                sockets.iter().filter_map(move |(id, socket)| {
                    socket
                        .pending
                        .as_ref()
                        .filter(|(_, since)| since.elapsed() > PENDING_FOR)
                        .map(|_| (key.clone(), id.clone()))
                })
            })
            .collect();
        for (key, id) in stale {
            self.remove(&key, &id);
        }
    }
}

/// The node's sockets of objects.
#[derive(Default)]
pub(crate) struct SocketRegistry {
    inner: Mutex<Registry>,
}

fn key_of(owner: &SocketOwner) -> ObjectKey {
    ObjectKey {
        tenant: owner.namespace.tenant.clone(),
        class: owner.namespace.class.clone(),
        id: owner.id,
    }
}

fn no_socket(socket: &str) -> EdgeError {
    EdgeError::invalid(format!("`{socket}` is not an open socket of this object"))
}

impl SocketRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many sockets are open or being opened, over all tenants.
    pub(crate) fn open(&self) -> usize {
        self.lock().by_object.values().map(BTreeMap::len).sum()
    }

    pub(crate) fn accept(
        &self,
        owner: &SocketOwner,
        tags: Vec<String>,
        tenant_limit: u32,
    ) -> EdgeResult<String> {
        let key = key_of(owner);
        let mut registry = self.lock();
        registry.purge_pending();
        let held = registry.by_object.get(&key).map_or(0, BTreeMap::len);
        if held >= owner.namespace.max_sockets as usize {
            return Err(EdgeError::limit(
                "durable_object.max_sockets",
                format!(
                    "the object holds {held} sockets, its class's max_sockets; close one first"
                ),
            ));
        }
        let tenant_held = registry.per_tenant.get(&key.tenant).copied().unwrap_or(0);
        if tenant_held >= tenant_limit {
            return Err(EdgeError::limit(
                "limits.websockets",
                format!("the tenant holds {tenant_held} sockets, its limits.websockets"),
            ));
        }
        let id = owner.namespace.key.new_unique_id().to_string()[..32].to_string();
        let (outbox, queued) = mpsc::channel(OUTBOX_DEPTH);
        registry.by_object.entry(key.clone()).or_default().insert(
            id.clone(),
            Socket {
                tags,
                attachment: None,
                outbox,
                pending: Some((queued, Instant::now())),
            },
        );
        *registry.per_tenant.entry(key.tenant).or_insert(0) += 1;
        Ok(id)
    }

    fn with_socket<T>(
        &self,
        owner: &SocketOwner,
        socket: &str,
        work: impl FnOnce(&mut Socket) -> EdgeResult<T>,
    ) -> EdgeResult<T> {
        let mut registry = self.lock();
        let found = registry
            .by_object
            .get_mut(&key_of(owner))
            .and_then(|sockets| sockets.get_mut(socket))
            .ok_or_else(|| no_socket(socket))?;
        work(found)
    }

    pub(crate) fn send(
        &self,
        owner: &SocketOwner,
        socket: &str,
        message: SocketMessage,
    ) -> EdgeResult<()> {
        let max = owner.namespace.max_message;
        let message = match message {
            SocketMessage::Text(text) => Message::Text(text.into()),
            SocketMessage::Binary(bytes) => Message::Binary(bytes.into()),
        };
        if message.len() as u64 > max {
            return Err(EdgeError::limit(
                "durable_object.max_message",
                format!("a message is at most {max} bytes (the class's max_message)"),
            ));
        }
        self.with_socket(owner, socket, |found| {
            found
                .outbox
                .try_send(Outgoing::Message(message))
                .map_err(|_| {
                    EdgeError::limit(
                        "durable_object.socket_buffer",
                        format!(
                            "{OUTBOX_DEPTH} messages are waiting for this client; it reads too slowly"
                        ),
                    )
                })
        })
    }

    pub(crate) fn close(
        &self,
        owner: &SocketOwner,
        socket: &str,
        code: u16,
        reason: String,
    ) -> EdgeResult<()> {
        self.with_socket(owner, socket, |found| {
            // A full outbox is ended by its sender's drop below.
            let _ = found.outbox.try_send(Outgoing::Close(code, reason));
            Ok(())
        })?;
        let mut registry = self.lock();
        // A socket never connected has no task to take it out.
        let pending = registry
            .by_object
            .get(&key_of(owner))
            .and_then(|sockets| sockets.get(socket))
            .is_some_and(|found| found.pending.is_some());
        if pending {
            registry.remove(&key_of(owner), socket);
        }
        Ok(())
    }

    pub(crate) fn list(&self, owner: &SocketOwner, tag: Option<&str>) -> Vec<String> {
        let registry = self.lock();
        registry
            .by_object
            .get(&key_of(owner))
            .map(|sockets| {
                sockets
                    .iter()
                    .filter(|(_, socket)| {
                        tag.is_none_or(|tag| socket.tags.iter().any(|t| t == tag))
                    })
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn set_attachment(
        &self,
        owner: &SocketOwner,
        socket: &str,
        attachment: Vec<u8>,
    ) -> EdgeResult<()> {
        self.with_socket(owner, socket, |found| {
            found.attachment = Some(attachment);
            Ok(())
        })
    }

    pub(crate) fn attachment(
        &self,
        owner: &SocketOwner,
        socket: &str,
    ) -> EdgeResult<Option<Vec<u8>>> {
        self.with_socket(owner, socket, |found| Ok(found.attachment.clone()))
    }

    pub(crate) fn tags(&self, owner: &SocketOwner, socket: &str) -> EdgeResult<Vec<String>> {
        self.with_socket(owner, socket, |found| Ok(found.tags.clone()))
    }

    /// Takes the pending socket `socket` of `tenant` for the node to connect.
    fn claim(&self, tenant: &str, socket: &str) -> Option<(ObjectKey, mpsc::Receiver<Outgoing>)> {
        let mut registry = self.lock();
        registry.by_object.iter_mut().find_map(|(key, sockets)| {
            if &*key.tenant != tenant {
                return None;
            }
            let found = sockets.get_mut(socket)?;
            let (queued, _) = found.pending.take()?;
            Some((key.clone(), queued))
        })
    }

    fn remove(&self, key: &ObjectKey, socket: &str) {
        self.lock().remove(key, socket);
    }
}

/// An accepted socket the node is about to connect to its client.
pub struct ClaimedSocket {
    key: ObjectKey,
    socket: String,
    queued: mpsc::Receiver<Outgoing>,
}

impl ObjectDirectory {
    /// Takes the socket a tenant's response names (`outpost-websocket`) for the node to
    /// complete the client's upgrade; none if the tenant has no such pending socket.
    pub fn claim_socket(&self, tenant: &str, socket: &str) -> Option<ClaimedSocket> {
        let (key, queued) = self.sockets.claim(tenant, socket)?;
        Some(ClaimedSocket {
            key,
            socket: socket.to_string(),
            queued,
        })
    }

    /// Forgets a claimed socket whose client never completed the upgrade.
    pub fn abandon_socket(&self, claimed: ClaimedSocket) {
        self.sockets.remove(&claimed.key, &claimed.socket);
    }

    /// Runs a claimed socket over `stream`, the client's upgraded connection, until it
    /// closes.
    pub async fn run_socket<S>(self: Arc<Self>, claimed: ClaimedSocket, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let ClaimedSocket {
            key,
            socket,
            mut queued,
        } = claimed;
        let max_message = self
            .router(&key.tenant)
            .and_then(|objects| {
                let instances = objects.version.instances();
                instances
                    .bindings
                    .objects
                    .namespace_of_class(&key.class)
                    .map(|n| n.max_message as usize)
            })
            .unwrap_or(1 << 20);
        // tungstenite's 128 KiB default read buffer is zero-filled on the first read, so
        // each idle socket would hold 128 KiB resident; a larger message grows it as needed.
        let config = WebSocketConfig::default()
            .read_buffer_size(SOCKET_READ_BUFFER)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let stream = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
        let (mut sink, mut incoming) = stream.split();
        let ended = loop {
            tokio::select! {
                out = queued.recv() => match out {
                    Some(Outgoing::Message(message)) => {
                        if sink.send(message).await.is_err() {
                            break Ended::Error("writing to the client failed".into());
                        }
                    }
                    Some(Outgoing::Close(code, reason)) => {
                        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break Ended::ByObject;
                    }
                    None => break Ended::ByObject,
                },
                message = incoming.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        self.deliver(&key, &socket, Event::Message("text", Bytes::from(text))).await;
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        self.deliver(&key, &socket, Event::Message("binary", bytes)).await;
                    }
                    // tungstenite answers pings itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame
                            .map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                        break Ended::ByClient(code, reason);
                    }
                    Some(Err(error)) => {
                        let (code, text) = match &error {
                            tokio_tungstenite::tungstenite::Error::Capacity(_) => {
                                (1009, format!("message larger than {max_message} bytes"))
                            }
                            other => (1002, other.to_string()),
                        };
                        let frame = CloseFrame { code: CloseCode::from(code), reason: text.clone().into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break Ended::Error(text);
                    }
                    None => break Ended::ByClient(1006, String::new()),
                },
            }
        };
        self.sockets.remove(&key, &socket);
        match ended {
            Ended::ByObject => {}
            Ended::ByClient(code, reason) => {
                self.deliver(&key, &socket, Event::Close(code, reason))
                    .await;
            }
            Ended::Error(error) => {
                tracing::info!(tenant = %key.tenant, object = %key.id, socket, "websocket ended: {error}");
                self.deliver(&key, &socket, Event::Error(error)).await;
            }
        }
    }

    /// Runs one WebSocket event on the socket's object, under its tenant's current
    /// version.
    async fn deliver(&self, key: &ObjectKey, socket: &str, event: Event) {
        let Some(objects) = self.router(&key.tenant) else {
            return;
        };
        let Some(namespace) = objects
            .version
            .instances()
            .bindings
            .objects
            .namespace_of_class(&key.class)
            .cloned()
        else {
            return;
        };
        let (kind, body, extra) = match event {
            Event::Message(kind, bytes) => (
                "websocket-message",
                bytes,
                Some((MESSAGE_KIND_HEADER, kind.to_string())),
            ),
            Event::Close(code, reason) => (
                "websocket-close",
                Bytes::from(reason),
                Some((CLOSE_CODE_HEADER, code.to_string())),
            ),
            Event::Error(error) => ("websocket-error", Bytes::from(error), None),
        };
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri("http://object/websocket")
            .header(EVENT_HEADER, kind)
            .header(EVENT_SOCKET_HEADER, socket);
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        let body = Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync();
        let Ok(request) = request.body(body) else {
            return;
        };
        let request_id: Arc<str> = Arc::from(format!("ws-{socket}"));
        let response = objects
            .event(namespace, key.id, request_id.clone(), request)
            .await;
        let status = response.status();
        let _ = response.into_body().collect().await;
        if !status.is_success() {
            tracing::warn!(tenant = %key.tenant, request_id = %request_id, object = %key.id,
                "websocket {kind} event failed with status {}", status.as_u16());
        }
    }
}

enum Event {
    Message(&'static str, Bytes),
    Close(u16, String),
    Error(String),
}

enum Ended {
    ByObject,
    ByClient(u16, String),
    Error(String),
}
