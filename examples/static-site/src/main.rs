//! A static site with a guest behind it: the node serves `public/` (the page, its
//! stylesheet and a fingerprinted, precompressed script) without running this guest,
//! which answers only what is not a file: the `/api/*` routes, sent to it first.
//!
//! ```toml
//! assets = { directory = "examples/static-site/public", not_found_handling = "single-page-application", run_worker_first = ["/api/*"] }
//! ```
//!
//! Any other path a browser navigates to gets `index.html` (the page routes in the
//! browser); a script's request for a missing file reaches this guest, which answers 404.

use outpost_sdk::{Env, Request, Response, Result};

#[outpost_sdk::fetch]
async fn fetch(req: Request, _env: Env) -> Result<Response> {
    outpost_sdk::route!(req, mount = String::new(), {
        GET "/api/hello" => |_| Response::json(&serde_json::json!({
            "message": "hello from the guest behind the static site",
            "country": req.header("x-client-country"),
        })),
    })
}
