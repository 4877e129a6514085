//! The seed's collaborative document room on a Durable Object with WebSockets
//! (`durable_objects = { ROOMS = { class = "DocRoom" } }`).
//!
//! - `GET /rooms/NAME?user=U` as a WebSocket: joins room NAME. The client first gets
//!   `{"type":"init","state":{"text":…,"version":n},"session":ID,"present":[…]}`; the
//!   others get `{"type":"presence","action":"join","session":ID,"user":U}`.
//! - Sending `{"type":"operation","operation":{"insert":{"at":N,"text":"…"}}}` (or
//!   `{"delete":{"at":N,"len":M}}`, positions in characters) applies it to the document,
//!   persists it, answers the sender `{"type":"ack","version":n}` and sends the others
//!   `{"type":"operation","operation":…,"from":ID,"version":n}`.
//! - Closing (or a failed socket) leaves: the others get `{"type":"presence","action":"leave",…}`.
//! - `GET /rooms/NAME/state` answers the document as JSON.
//!
//! The node holds the sockets, so a room whose clients are quiet leaves memory and the
//! next message wakes it with its sockets (and each one's user, kept as its attachment).

use outpost_sdk::reexports::serde_json::{self, Value, json};
use outpost_sdk::{
    DurableObject, Env, Error, Message, Request, Response, Result, State, WebSocket,
};
use serde::{Deserialize, Serialize};

#[outpost_sdk::fetch(objects = [DocRoom])]
async fn fetch(req: Request, env: Env) -> Result<Response> {
    let Some(rest) = req.path().strip_prefix("/rooms/") else {
        return Err(Error::not_found());
    };
    let name = rest.split('/').next().unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(Error::bad_request("give /rooms/NAME"));
    }
    env.durable_object("ROOMS")?
        .get_by_name(&name)
        .fetch(req)
        .await
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Document {
    text: String,
    version: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Operation {
    Insert { at: usize, text: String },
    Delete { at: usize, len: usize },
}

/// Character `at` as a byte offset into `text` (clamped to its end).
fn byte_at(text: &str, at: usize) -> usize {
    text.char_indices().nth(at).map_or(text.len(), |(i, _)| i)
}

impl Document {
    fn apply(&mut self, operation: &Operation) {
        match operation {
            Operation::Insert { at, text } => {
                let at = byte_at(&self.text, *at);
                self.text.insert_str(at, text);
            }
            Operation::Delete { at, len } => {
                let start = byte_at(&self.text, *at);
                let end = byte_at(&self.text, at + len);
                self.text.replace_range(start..end, "");
            }
        }
        self.version += 1;
    }
}

#[outpost_sdk::durable_object]
struct DocRoom {
    state: State,
    document: Option<Document>,
}

impl DocRoom {
    async fn document(&mut self) -> Result<Document> {
        if let Some(document) = &self.document {
            return Ok(document.clone());
        }
        let document: Document = self
            .state
            .storage()
            .get_json("document")
            .await?
            .unwrap_or_default();
        self.document = Some(document.clone());
        Ok(document)
    }

    /// Sends `message` to every socket but `except`.
    fn broadcast(&self, except: &WebSocket, message: &Value) {
        let text = message.to_string();
        for socket in self.state.web_sockets(None) {
            if &socket != except {
                // A client that cannot take more misses this one; the others go on.
                let _ = socket.send_text(&text);
            }
        }
    }

    fn leave(&self, socket: &WebSocket) {
        self.broadcast(
            socket,
            &json!({ "type": "presence", "action": "leave", "session": socket.id() }),
        );
    }

    fn user(socket: &WebSocket) -> String {
        socket
            .attachment()
            .ok()
            .flatten()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }
}

impl DurableObject for DocRoom {
    fn new(state: State, _env: Env) -> DocRoom {
        DocRoom {
            state,
            document: None,
        }
    }

    async fn fetch(&mut self, req: Request) -> Result<Response> {
        if req.path().ends_with("/state") {
            return Response::json(&self.document().await?);
        }
        if !req.is_web_socket_upgrade() {
            return Err(Error::new(426, "connect with a WebSocket"));
        }
        let user = req.query_param("user").unwrap_or_else(|| "anonymous".into());
        let socket = self.state.accept_web_socket(&["room"])?;
        socket.set_attachment(user.as_bytes())?;
        let present: Vec<Value> = self
            .state
            .web_sockets(None)
            .iter()
            .filter(|other| *other != &socket)
            .map(|other| json!({ "session": other.id(), "user": DocRoom::user(other) }))
            .collect();
        let init = json!({
            "type": "init",
            "state": self.document().await?,
            "session": socket.id(),
            "present": present,
        });
        socket.send_text(&init.to_string())?;
        self.broadcast(
            &socket,
            &json!({ "type": "presence", "action": "join", "session": socket.id(), "user": user }),
        );
        Ok(socket.accept_response())
    }

    async fn web_socket_message(&mut self, socket: WebSocket, message: Message) -> Result<()> {
        let Message::Text(text) = message else {
            return socket.send_text(&json!({ "type": "error", "error": "send JSON text" }).to_string());
        };
        let parsed: Value = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(error) => {
                return socket.send_text(
                    &json!({ "type": "error", "error": format!("not JSON: {error}") }).to_string(),
                );
            }
        };
        if parsed["type"] != "operation" {
            return socket
                .send_text(&json!({ "type": "error", "error": "unknown message type" }).to_string());
        }
        let operation: Operation = match serde_json::from_value(parsed["operation"].clone()) {
            Ok(operation) => operation,
            Err(error) => {
                return socket.send_text(
                    &json!({ "type": "error", "error": format!("bad operation: {error}") })
                        .to_string(),
                );
            }
        };
        let mut document = self.document().await?;
        document.apply(&operation);
        // Durable before anyone hears of it.
        self.state.storage().put_json("document", &document).await?;
        let version = document.version;
        self.document = Some(document);
        socket.send_text(&json!({ "type": "ack", "version": version }).to_string())?;
        self.broadcast(
            &socket,
            &json!({ "type": "operation", "operation": parsed["operation"], "from": socket.id(), "version": version }),
        );
        Ok(())
    }

    async fn web_socket_close(&mut self, socket: WebSocket, _code: u16, _reason: String) -> Result<()> {
        self.leave(&socket);
        Ok(())
    }

    /// A socket that failed (say, a message over `max_message`) is closed: it left.
    async fn web_socket_error(&mut self, socket: WebSocket, _error: String) -> Result<()> {
        self.leave(&socket);
        Ok(())
    }
}
