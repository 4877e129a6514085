//! Durable Objects: one live instance per id, events one at a time, storage of its own.
//!
//! The caller side, from any handler of the tenant:
//!
//! ```ignore
//! let counter = env.durable_object("COUNTERS")?.get_by_name("page-42");
//! let response = counter.fetch(Request::new(Method::POST, "/increment")?).await?;
//! ```
//!
//! The object side: a type that implements [`DurableObject`], marked with
//! `#[outpost_sdk::durable_object]` (its class is the type's name, as the tenant's
//! config gives it: `durable_objects = { COUNTERS = { class = "Counter" } }`) and listed
//! in the fetch attribute, `#[outpost_sdk::fetch(objects = [Counter])]`. The value lives
//! in the instance while the object is active; its [`Storage`] is what survives.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::stores::store_error;
use crate::stores::wit::outpost::edge::durable_object as host;
use crate::{Env, Error, Request, Response, Result};

pub use crate::stores::sql::{Rows, Value};

/// The objects of one class (`env.durable_object("BINDING")`).
#[derive(Clone)]
pub struct ObjectNamespace {
    binding: Rc<str>,
    namespace: Rc<host::Namespace>,
}

/// An object's address: its class and 64 hex digits. `to_string()` gives the digits,
/// which [`ObjectNamespace::id_from_string`] takes back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectId {
    /// The class, as the config binds it.
    pub class: String,
    id: String,
    /// The name it was derived from, when the caller used one.
    pub name: Option<String>,
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

impl From<host::ObjectId> for ObjectId {
    fn from(id: host::ObjectId) -> ObjectId {
        ObjectId {
            class: id.class,
            id: id.id,
            name: id.name,
        }
    }
}

impl ObjectNamespace {
    pub(crate) fn open(binding: &str) -> Result<ObjectNamespace> {
        let namespace = host::Namespace::open(binding)
            .map_err(|e| store_error(format_args!("durable object `{binding}`"), e))?;
        Ok(ObjectNamespace {
            binding: binding.into(),
            namespace: Rc::new(namespace),
        })
    }

    /// The id of the object called `name`: the same name always reaches the same object.
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        self.namespace.id_from_name(name).into()
    }

    /// A new object's id, unlike any other.
    pub fn new_unique_id(&self) -> ObjectId {
        self.namespace.new_unique_id().into()
    }

    /// Takes back an id's string; an id of another class or tenant is refused.
    pub fn id_from_string(&self, id: &str) -> Result<ObjectId> {
        let id = self
            .namespace
            .id_from_string(id)
            .map_err(|e| store_error(format_args!("durable object `{}`", self.binding), e))?;
        Ok(id.into())
    }

    /// A stub for the object `id`.
    pub fn get(&self, id: &ObjectId) -> Stub {
        Stub {
            binding: self.binding.clone(),
            id: id.clone(),
        }
    }

    /// A stub for the object called `name`.
    pub fn get_by_name(&self, name: &str) -> Stub {
        self.get(&self.id_from_name(name))
    }
}

/// Sends requests to one object.
#[derive(Debug, Clone)]
pub struct Stub {
    binding: Rc<str>,
    id: ObjectId,
}

impl Stub {
    /// The object's id.
    pub fn id(&self) -> &ObjectId {
        &self.id
    }

    /// Runs `request` as one of the object's events and answers its response. The URL
    /// is the object's to interpret; a path-only one gets the host `object`. When the
    /// object fails (a limit, a trap) or is overloaded, the node answers for it with a
    /// 5xx and an `outpost-object-failure` header saying why.
    pub async fn fetch(&self, request: Request) -> Result<Response> {
        let mut request = request.into_http();
        for name in crate::request::HOP_BY_HOP {
            request.headers_mut().remove(name);
        }
        if request.uri().authority().is_none() {
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            *request.uri_mut() = format!("http://object{path}")
                .parse()
                .map_err(|e| Error::internal(format!("object request URL: {e}")))?;
        }
        let target = format!("{} {}", self.binding, self.id.id);
        let target = http::HeaderValue::from_str(&target)
            .map_err(|e| Error::internal(format!("object binding name: {e}")))?;
        request.headers_mut().insert(OBJECT_HEADER, target);
        let response = wstd::http::Client::new()
            .send(request)
            .await
            .map_err(|e| Error::new(502, format!("durable object `{}`: {e}", self.binding)))?;
        Ok(Response::from_http(response))
    }
}

/// The header the node reads to route a request to an object.
const OBJECT_HEADER: &str = "outpost-object";

/// An object's own view of itself: its id and storage.
#[derive(Debug, Clone)]
pub struct State {
    id: ObjectId,
}

impl State {
    /// The object's id.
    pub fn id(&self) -> &ObjectId {
        &self.id
    }

    /// The object's storage.
    pub fn storage(&self) -> Storage {
        Storage
    }

    /// Accepts the WebSocket upgrade the current request asks for, with `tags` to find
    /// the socket by later (at most 10). Answer the request with
    /// [`WebSocket::accept_response`]. The node holds the connection: the object may leave
    /// memory while the socket idles, and each message wakes it
    /// ([`DurableObject::web_socket_message`]).
    pub fn accept_web_socket(&self, tags: &[&str]) -> Result<WebSocket> {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let id = host::accept_web_socket(&tags).map_err(storage_error("accept_web_socket"))?;
        Ok(WebSocket { id })
    }

    /// The object's open sockets, or those accepted with `tag`.
    pub fn web_sockets(&self, tag: Option<&str>) -> Vec<WebSocket> {
        host::web_sockets(tag)
            .into_iter()
            .map(|id| WebSocket { id })
            .collect()
    }
}

/// One of the object's WebSockets, held by the node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebSocket {
    id: String,
}

/// A WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl WebSocket {
    /// The socket's id (stable while it is open).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The response that completes the upgrade (`101 Switching Protocols` to the client).
    pub fn accept_response(&self) -> Response {
        Response::new(200).with_header(SOCKET_HEADER, &self.id)
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<()> {
        host::web_socket_send(&self.id, &host::Message::Text(text.to_string()))
            .map_err(storage_error("websocket send"))
    }

    /// Sends a binary message.
    pub fn send_binary(&self, bytes: &[u8]) -> Result<()> {
        host::web_socket_send(&self.id, &host::Message::Binary(bytes.to_vec()))
            .map_err(storage_error("websocket send"))
    }

    /// Closes the socket with `code` and `reason` (at most 123 bytes).
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        host::web_socket_close(&self.id, code, reason).map_err(storage_error("websocket close"))
    }

    /// Keeps up to 2 KiB with the socket, across hibernation.
    pub fn set_attachment(&self, attachment: &[u8]) -> Result<()> {
        host::web_socket_set_attachment(&self.id, attachment)
            .map_err(storage_error("websocket attachment"))
    }

    /// The socket's attachment, if set.
    pub fn attachment(&self) -> Result<Option<Vec<u8>>> {
        host::web_socket_attachment(&self.id).map_err(storage_error("websocket attachment"))
    }

    /// The tags it was accepted with.
    pub fn tags(&self) -> Result<Vec<String>> {
        host::web_socket_tags(&self.id).map_err(storage_error("websocket tags"))
    }
}

const SOCKET_HEADER: &str = "outpost-websocket";

/// An object's storage: a KV map and a SQLite database in one file. Each write is
/// durable when its call returns (the response after it is never sent before), unless
/// inside [`Storage::transaction`], where it is durable at the commit.
#[derive(Debug, Clone, Copy)]
pub struct Storage;

/// Which keys [`Storage::list`] returns (in UTF-8 byte order).
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Keys at or after this one.
    pub start: Option<String>,
    /// Keys after this one.
    pub start_after: Option<String>,
    /// Keys before this one.
    pub end: Option<String>,
    /// Keys starting so.
    pub prefix: Option<String>,
    /// Descending order.
    pub reverse: bool,
    /// At most this many.
    pub limit: Option<u32>,
}

fn storage_error(what: &str) -> impl FnOnce(super::stores::HostError) -> Error + '_ {
    move |e| store_error(format_args!("object storage {what}"), e)
}

impl Storage {
    /// The value of `key`, if set.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut found = host::storage_get(&[key.to_string()]).map_err(storage_error("get"))?;
        Ok(found.pop().map(|(_, value)| value))
    }

    /// The values of those `keys` that are set (at most 128 keys).
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        host::storage_get(keys).map_err(storage_error("get"))
    }

    /// The value of `key` parsed as JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key).await? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Sets `key` (at most 2 KiB) to `value` (at most 128 KiB).
    pub async fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<()> {
        host::storage_put(&[(key.to_string(), value.into())]).map_err(storage_error("put"))
    }

    /// Sets `key` to `value` as JSON.
    pub async fn put_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<()> {
        self.put(key, serde_json::to_vec(value)?).await
    }

    /// Sets all `entries` at once (at most 128).
    pub async fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<()> {
        host::storage_put(entries).map_err(storage_error("put"))
    }

    /// Deletes `keys` (at most 128); answers how many were set.
    pub async fn delete(&self, keys: &[String]) -> Result<u32> {
        host::storage_delete(keys).map_err(storage_error("delete"))
    }

    /// The entries `options` selects, in key order.
    pub async fn list(&self, options: ListOptions) -> Result<Vec<(String, Vec<u8>)>> {
        host::storage_list(&host::ListOptions {
            start: options.start,
            start_after: options.start_after,
            end: options.end,
            prefix: options.prefix,
            reverse: options.reverse,
            limit: options.limit,
        })
        .map_err(storage_error("list"))
    }

    /// Deletes every key and every SQL table.
    pub async fn delete_all(&self) -> Result<()> {
        host::storage_delete_all().map_err(storage_error("delete_all"))
    }

    /// Runs one SQL statement on the object's database and answers its rows (and, in
    /// `changes`, what a write changed).
    pub async fn sql(&self, sql: &str, params: Vec<Value>) -> Result<(Rows, u64)> {
        let result = host::sql_exec(sql, &params).map_err(storage_error("sql"))?;
        Ok((
            Rows {
                columns: result.columns,
                rows: result.rows,
            },
            result.changes,
        ))
    }

    /// Sets the object's alarm to `at`, replacing any: the node then runs the object's
    /// [`DurableObject::alarm`], even after a restart; a time past fires at once.
    /// Durable when it returns. A failed alarm is retried (from 2 s, doubling, six
    /// times).
    pub async fn set_alarm(&self, at: SystemTime) -> Result<()> {
        host::set_alarm(unix_ms(at)).map_err(storage_error("set_alarm"))
    }

    /// The object's alarm, if set (none while it runs, unless set again).
    pub async fn get_alarm(&self) -> Result<Option<SystemTime>> {
        let at = host::get_alarm().map_err(storage_error("get_alarm"))?;
        Ok(at.map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)))
    }

    /// Cancels the object's alarm, if any.
    pub async fn delete_alarm(&self) -> Result<()> {
        host::delete_alarm().map_err(storage_error("delete_alarm"))
    }

    /// Runs `work` in one transaction: committed (durable) when it returns `Ok`, rolled
    /// back when it returns `Err`.
    pub async fn transaction<T, F, Fut>(&self, work: F) -> Result<T>
    where
        F: FnOnce(Storage) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        host::transaction_begin().map_err(storage_error("transaction"))?;
        match work(Storage).await {
            Ok(value) => {
                host::transaction_commit().map_err(storage_error("commit"))?;
                Ok(value)
            }
            Err(error) => {
                host::transaction_rollback().map_err(storage_error("rollback"))?;
                Err(error)
            }
        }
    }
}

fn unix_ms(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_millis().min(i64::MAX as u128) as i64,
        Err(_) => 0,
    }
}

/// What an alarm event knows about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmInfo {
    /// How many times this alarm failed before (0 on its first run).
    pub retry_count: u32,
}

/// The name of an object class: `#[outpost_sdk::durable_object]` implements it with the
/// type's name.
pub trait ObjectClass {
    /// The class, as `durable_objects = { BINDING = { class = "…" } }` names it.
    const CLASS: &'static str;
}

/// An object class. One value per live object: built by [`DurableObject::new`] for the
/// object's first event after it starts (or restarts: after idling, a deploy or a
/// limit hit), then given each event in turn, never two at once.
#[allow(async_fn_in_trait)]
pub trait DurableObject: ObjectClass + Sized + 'static {
    /// Builds the object; load what it needs from `state.storage()` in its first event.
    fn new(state: State, env: Env) -> Self;

    /// Handles one request sent to the object.
    async fn fetch(&mut self, request: Request) -> Result<Response>;

    /// Runs when the alarm set with [`Storage::set_alarm`] is due. An `Err` (or a trap,
    /// or a limit hit) has it retried.
    async fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let _ = info;
        Ok(())
    }

    /// A message arrived on one of the object's sockets.
    async fn web_socket_message(&mut self, socket: WebSocket, message: Message) -> Result<()> {
        let _ = (socket, message);
        Ok(())
    }

    /// The client closed `socket` (`code` 1006: the connection dropped without a close).
    async fn web_socket_close(&mut self, socket: WebSocket, code: u16, reason: String) -> Result<()> {
        let _ = (socket, code, reason);
        Ok(())
    }

    /// `socket` failed (a protocol error, or a message over the class's `max_message`);
    /// it is closed.
    async fn web_socket_error(&mut self, socket: WebSocket, error: String) -> Result<()> {
        let _ = (socket, error);
        Ok(())
    }
}

#[doc(hidden)]
pub mod dispatch;
