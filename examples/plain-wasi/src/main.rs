//! A plain `wasi:http/proxy` component built with `wstd` alone: no outpost imports, no
//! outpost SDK. It shows outpost runs any wasi:http component unchanged.

use wstd::http::{Body, Request, Response, Result};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>> {
    let path = request.uri().path().to_string();
    Ok(Response::new(
        format!("plain wasi:http component at {path}\n").into(),
    ))
}
