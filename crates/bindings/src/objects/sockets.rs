//! The WebSockets of objects, as the guest's host calls see them: the runtime holds the
//! connections ([`ObjectSockets`]), this crate checks the calls and finds the object.

use std::sync::Arc;

use super::{ObjectId, ObjectNamespace};
use crate::EdgeResult;

pub use crate::generated::outpost::edge::durable_object::Message as SocketMessage;

/// The response header that carries an accepted socket's id back to the node.
pub const SOCKET_HEADER: &str = "outpost-websocket";
/// On a WebSocket event: which socket it is for.
pub const EVENT_SOCKET_HEADER: &str = "outpost-socket";
/// On a message event: `text` or `binary`.
pub const MESSAGE_KIND_HEADER: &str = "outpost-message";
/// On a close event: the close code (the body is the reason).
pub const CLOSE_CODE_HEADER: &str = "outpost-close-code";

/// Tags per socket (Workers': 10), and bytes per tag (Workers': 256).
pub const MAX_TAGS: usize = 10;
/// Bytes of one tag.
pub const MAX_TAG_BYTES: usize = 256;
/// Bytes of a socket's attachment (Workers': 2,048).
pub const MAX_ATTACHMENT_BYTES: usize = 2048;

/// Which object a socket call is for.
#[derive(Clone)]
pub struct SocketOwner {
    /// Its class, with the class's socket limits.
    pub namespace: Arc<ObjectNamespace>,
    /// Its id.
    pub id: ObjectId,
}

/// The node's WebSockets of objects; the runtime implements it.
pub trait ObjectSockets: Send + Sync {
    /// Accepts the upgrade of the current event's request for `owner`, with `tags`;
    /// answers the socket's id.
    fn accept(&self, owner: &SocketOwner, tags: Vec<String>) -> EdgeResult<String>;
    /// Queues `message` on `socket`.
    fn send(&self, owner: &SocketOwner, socket: &str, message: SocketMessage) -> EdgeResult<()>;
    /// Closes `socket`.
    fn close(&self, owner: &SocketOwner, socket: &str, code: u16, reason: String)
    -> EdgeResult<()>;
    /// The owner's sockets, or those with `tag`.
    fn list(&self, owner: &SocketOwner, tag: Option<&str>) -> Vec<String>;
    /// Sets `socket`'s attachment.
    fn set_attachment(
        &self,
        owner: &SocketOwner,
        socket: &str,
        attachment: Vec<u8>,
    ) -> EdgeResult<()>;
    /// `socket`'s attachment.
    fn attachment(&self, owner: &SocketOwner, socket: &str) -> EdgeResult<Option<Vec<u8>>>;
    /// `socket`'s tags.
    fn tags(&self, owner: &SocketOwner, socket: &str) -> EdgeResult<Vec<String>>;
}
