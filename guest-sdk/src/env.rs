//! [`Env`]: what a handler may reach besides its request (Workers' `env` and `ctx`):
//! variables, secrets, stores, outbound fetch and work after the response.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;

use crate::stores::{blob::Bucket, cache::Cache, kv::Kv, sql::Sql};
use crate::{Error, Request, Response, Result};

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The tenant's environment: its variables, and (with the storage bindings) its stores.
///
/// Cheap to clone; clones share the `wait_until` queue.
#[derive(Clone, Default)]
pub struct Env {
    after_response: Rc<RefCell<Vec<Task>>>,
    /// The incoming request's W3C trace context, passed on to subrequests.
    traceparent: Option<String>,
}

impl Env {
    pub(crate) fn new(traceparent: Option<String>) -> Env {
        Env {
            traceparent,
            ..Env::default()
        }
    }

    /// A variable from the tenant's `vars` in the node config.
    pub fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    /// A secret from the tenant's `secrets` (read by the node from its environment or a
    /// file, never written in the config). The node passes secrets the way it passes
    /// vars; asking for one by this name says which the code means.
    pub fn secret(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    /// The KV namespace bound as `name` (`kv = ["NAME"]` in the tenant's config).
    pub fn kv(&self, name: &str) -> Result<Kv> {
        Kv::open(name)
    }

    /// The SQL database bound as `name` (`sql = ["NAME"]`).
    pub fn sql(&self, name: &str) -> Result<Sql> {
        Sql::open(name)
    }

    /// The blob bucket bound as `name` (`blob = { NAME = "…" }`).
    pub fn blob(&self, name: &str) -> Result<Bucket> {
        Bucket::open(name)
    }

    /// The Durable Object class bound as `name`
    /// (`durable_objects = { NAME = { class = "…" } }`).
    pub fn durable_object(&self, name: &str) -> Result<crate::ObjectNamespace> {
        crate::ObjectNamespace::open(name)
    }

    /// The tenant's HTTP cache (`cache = { enabled = true }`), Workers' `caches.default`.
    pub fn cache(&self) -> Cache {
        Cache
    }

    /// Sends `request` to an origin the tenant lists in `outbound` and answers its
    /// response, whose body streams. Any other destination is refused (502 with the
    /// reason if propagated with `?`); so is a name that resolves to a private address.
    /// Concurrent fetches (say, with `futures::join!`) run concurrently.
    ///
    /// The request carries the incoming request's `traceparent` unless it sets its own,
    /// so the origin's traces join this one.
    pub async fn fetch(&self, request: Request) -> Result<Response> {
        let mut request = request.into_http();
        if let Some(traceparent) = &self.traceparent
            && !request.headers().contains_key("traceparent")
            && let Ok(value) = http::HeaderValue::from_str(traceparent)
        {
            request.headers_mut().insert("traceparent", value);
        }
        let url = request.uri().to_string();
        let response = wstd::http::Client::new()
            .send(request)
            .await
            .map_err(|e| Error::new(502, format!("fetch {url}: {e}")))?;
        Ok(Response::from_http(response))
    }

    /// Runs `work` after the response has been sent (Workers' `ctx.waitUntil`): logging,
    /// cache fills, analytics. It runs under the same limits as the request.
    pub fn wait_until(&self, work: impl Future<Output = ()> + 'static) {
        self.after_response.borrow_mut().push(Box::pin(work));
    }

    pub(crate) async fn run_after_response(&self) {
        loop {
            let tasks = std::mem::take(&mut *self.after_response.borrow_mut());
            if tasks.is_empty() {
                return;
            }
            for task in tasks {
                task.await;
            }
        }
    }
}
