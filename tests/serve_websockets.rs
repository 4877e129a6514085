//! WebSockets of Durable Objects through the real binary and `examples/doc-room`:
//! broadcast in order, a persisted document for a client that comes back, hibernation
//! (the object leaves memory, its sockets stay and wake it), and the socket limits.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Launched, Node, metric, tenant, wait_for_metric};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const TOKEN: &str = "websockets-admin-token-93b0";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Room {
    node: Node,
    admin: SocketAddr,
}

async fn start(class_keys: &str) -> Room {
    let rooms = tenant(
        "rooms",
        "doc-room",
        &["/rooms"],
        &format!("durable_objects = {{ ROOMS = {{ class = \"DocRoom\"{class_keys} }} }}"),
    );
    let Launched { node, admin, .. } = support::launch_with_admin(TOKEN, 100, &rooms).await;
    Room { node, admin }
}

impl Room {
    async fn connect(&self, room: &str, user: &str) -> (Socket, Value) {
        let url = format!("ws://{}/rooms/{room}?user={user}", self.node.addr);
        let (mut socket, response) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("{user} connects: {e}\n{}", self.node.logs()));
        assert_eq!(response.status(), 101);
        let init = next(&mut socket).await;
        assert_eq!(init["type"], "init", "{init}");
        (socket, init)
    }
}

/// The next JSON message (within 10 s).
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a message");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn insert(socket: &mut Socket, at: usize, text: &str) {
    let operation =
        json!({ "type": "operation", "operation": { "insert": { "at": at, "text": text } } });
    socket
        .send(Message::Text(operation.to_string().into()))
        .await
        .expect("send");
}

#[tokio::test]
async fn three_clients_hear_each_other_in_order_and_a_returning_one_gets_the_document() {
    let room = start("").await;
    let (mut a, init) = room.connect("doc-42", "ann").await;
    assert_eq!(init["state"], json!({ "text": "", "version": 0 }));
    let (mut b, init) = room.connect("doc-42", "bob").await;
    assert_eq!(init["present"][0]["user"], "ann");
    assert_eq!(next(&mut a).await["action"], "join");
    let (mut c, _) = room.connect("doc-42", "cy").await;
    for other in [&mut a, &mut b] {
        let joined = next(other).await;
        assert_eq!(
            (joined["action"].as_str(), joined["user"].as_str()),
            (Some("join"), Some("cy"))
        );
    }

    for (at, text) in [(0, "H"), (1, "i"), (2, "!")] {
        insert(&mut a, at, text).await;
    }
    for version in 1..=3 {
        assert_eq!(
            next(&mut a).await,
            json!({ "type": "ack", "version": version })
        );
    }
    for other in [&mut b, &mut c] {
        let texts: Vec<Value> = [next(other).await, next(other).await, next(other).await]
            .iter()
            .map(|m| {
                assert_eq!(m["type"], "operation", "{m}");
                m["operation"]["insert"]["text"].clone()
            })
            .collect();
        assert_eq!(texts, ["H", "i", "!"], "every operation, in order");
    }

    c.close(None).await.expect("close");
    for other in [&mut a, &mut b] {
        assert_eq!(next(other).await["action"], "leave");
    }
    let (_c, init) = room.connect("doc-42", "cy").await;
    assert_eq!(init["state"], json!({ "text": "Hi!", "version": 3 }));
    let state = room.node.get("any.test", "/rooms/doc-42/state").await;
    assert_eq!(state.json(), json!({ "text": "Hi!", "version": 3 }));

    // A message larger than the node's 4 KiB read buffer arrives whole.
    let long = "y".repeat(20 * 1024);
    insert(&mut a, 0, &long).await;
    for (socket, kind) in [(&mut a, "ack"), (&mut b, "operation")] {
        // Past the presence of cy's return.
        let mut message = next(socket).await;
        while message["type"] == "presence" {
            message = next(socket).await;
        }
        assert_eq!(
            (message["type"].as_str(), &message["version"]),
            (Some(kind), &json!(4))
        );
        if kind == "operation" {
            assert_eq!(message["operation"]["insert"]["text"], long.as_str());
        }
    }
}

#[tokio::test]
async fn a_hibernating_room_keeps_its_sockets_and_wakes_on_a_message() {
    let room = start(", idle_timeout = \"1s\"").await;
    let (mut a, _) = room.connect("quiet", "ann").await;
    let (mut b, _) = room.connect("quiet", "bob").await;
    assert_eq!(next(&mut a).await["action"], "join");

    // Both sockets idle: the object leaves memory, the node keeps them.
    wait_for_metric(room.admin, TOKEN, "outpost_objects_live", 0.0).await;
    assert_eq!(
        metric(room.admin, TOKEN, "outpost_objects_websockets_open").await,
        2.0
    );

    insert(&mut b, 0, "woken").await;
    assert_eq!(next(&mut b).await, json!({ "type": "ack", "version": 1 }));
    let heard = next(&mut a).await;
    assert_eq!(heard["operation"]["insert"]["text"], "woken", "{heard}");
    assert_eq!(metric(room.admin, TOKEN, "outpost_objects_live").await, 1.0);
}

#[tokio::test]
async fn oversized_messages_and_too_many_sockets_are_refused_clearly() {
    let room = start(", max_sockets = 2, max_message = \"1KiB\"").await;
    let (mut a, _) = room.connect("small", "ann").await;
    let (mut b, _) = room.connect("small", "bob").await;
    assert_eq!(next(&mut a).await["action"], "join");

    let refused = room
        .node
        .send(
            http::Method::GET,
            "any.test",
            "/rooms/small?user=cy",
            &[
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("sec-websocket-version", "13"),
            ],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(
        refused.status, 400,
        "a third socket is refused: {}",
        refused.body
    );
    assert!(
        refused.body.contains("max_sockets"),
        "says why: {}",
        refused.body
    );

    let big = "x".repeat(2048);
    a.send(Message::Text(big.into())).await.expect("send");
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), a.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("a close frame, got {other:?}"),
        }
    };
    let frame = closed.expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1009, "{frame:?}");

    // The other socket carries on, and nothing of the big message landed.
    assert_eq!(next(&mut b).await["action"], "leave");
    insert(&mut b, 0, "ok").await;
    assert_eq!(next(&mut b).await, json!({ "type": "ack", "version": 1 }));
    // The closed socket's slot is free again.
    let (_c, init) = room.connect("small", "cy").await;
    assert_eq!(init["state"]["text"], "ok");
}
