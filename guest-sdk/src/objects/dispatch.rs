//! Running a class's object for one event: the instance keeps the object's value
//! between events, and the node's event header says which method to call.
use std::any::Any;
use std::cell::RefCell;
use std::pin::Pin;

use super::{AlarmInfo, DurableObject, Message, ObjectId, State, WebSocket, host};

/// Set by the node on events that are not requests (`alarm`).
const EVENT_HEADER: &str = "outpost-event";
const ALARM_RETRY_HEADER: &str = "outpost-alarm-retry";
const SOCKET_HEADER: &str = "outpost-socket";
const MESSAGE_HEADER: &str = "outpost-message";
const CLOSE_CODE_HEADER: &str = "outpost-close-code";
use crate::{Env, Request, Response, Result};

/// Runs one event of a class's object.
pub type Entry = fn(Request, Env, ObjectId) -> Pin<Box<dyn Future<Output = Result<Response>>>>;

thread_local! {
    /// The live object of this instance (an instance runs one object all its life).
    static LIVE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// The object this instance runs as, if it is one.
pub fn current() -> Option<ObjectId> {
    host::current().map(ObjectId::from)
}

/// The entry of class `O`.
pub fn entry<O: DurableObject>(
    request: Request,
    env: Env,
    id: ObjectId,
) -> Pin<Box<dyn Future<Output = Result<Response>>>> {
    Box::pin(async move {
        let kept = LIVE.with(|live| live.borrow_mut().take());
        let mut object = match kept.and_then(|kept| kept.downcast::<O>().ok()) {
            Some(object) => object,
            None => Box::new(O::new(State { id }, env)),
        };
        // Out of the slot while it runs: events never overlap, and a trap ends the
        // instance anyway.
        let event = request.header(EVENT_HEADER).map(str::to_string);
        let answer = match event.as_deref() {
            Some("alarm") => {
                let retry_count = request
                    .header(ALARM_RETRY_HEADER)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                match object.alarm(AlarmInfo { retry_count }).await {
                    Ok(()) => Ok(Response::new(204)),
                    Err(error) => Err(error),
                }
            }
            Some(kind @ ("websocket-message" | "websocket-close" | "websocket-error")) => {
                let kind = kind.to_string();
                let socket = WebSocket {
                    id: request.header(SOCKET_HEADER).unwrap_or_default().to_string(),
                };
                let message_kind = request.header(MESSAGE_HEADER).map(str::to_string);
                let code = request
                    .header(CLOSE_CODE_HEADER)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1005);
                let body = request.bytes().await?;
                let handled = match kind.as_str() {
                    "websocket-message" => {
                        let message = match message_kind.as_deref() {
                            Some("binary") => Message::Binary(body),
                            _ => Message::Text(String::from_utf8_lossy(&body).into_owned()),
                        };
                        object.web_socket_message(socket, message).await
                    }
                    "websocket-close" => {
                        let reason = String::from_utf8_lossy(&body).into_owned();
                        object.web_socket_close(socket, code, reason).await
                    }
                    _ => {
                        let error = String::from_utf8_lossy(&body).into_owned();
                        object.web_socket_error(socket, error).await
                    }
                };
                handled.map(|()| Response::new(204))
            }
            _ => object.fetch(request).await,
        };
        LIVE.with(|live| *live.borrow_mut() = Some(object));
        answer
    })
}
