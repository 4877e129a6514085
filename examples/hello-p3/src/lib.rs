//! A WASI 0.3 guest: exports `wasi:http/handler@0.3` with the `wasip3` crate alone (no
//! outpost SDK), and streams its body from a task spawned after returning the response.
//! With `?n=N` it answers its Nth request since instantiation, which shows whether the
//! instance is fresh or reused.

use std::sync::atomic::{AtomicU64, Ordering};

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(HelloP3);

static REQUESTS_SEEN: AtomicU64 = AtomicU64::new(0);

struct HelloP3;

impl wasip3::exports::http::handler::Guest for HelloP3 {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let seen = REQUESTS_SEEN.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.get_path_with_query().unwrap_or_default();
        let (mut body_tx, body_rx) = wit_stream::new();
        let (body_result_tx, body_result_rx) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(Fields::new(), Some(body_rx), body_result_rx);
        drop(body_result_tx);
        wit_bindgen::spawn_local(async move {
            let text = format!("hello from wasi 0.3 at {path} (request {seen} of this instance)");
            let remaining = body_tx.write_all(text.into_bytes()).await;
            assert!(remaining.is_empty(), "the client hung up");
        });
        Ok(response)
    }
}
