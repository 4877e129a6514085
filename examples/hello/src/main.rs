//! The smallest outpost guest: every request gets `hello from outpost`.

use outpost_sdk::{Env, Request, Response, Result};

#[outpost_sdk::fetch]
async fn fetch(_req: Request, _env: Env) -> Result<Response> {
    Ok(Response::text("hello from outpost"))
}
