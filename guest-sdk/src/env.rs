use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;

use crate::Result;
use crate::stores::{blob::Bucket, kv::Kv, sql::Sql};

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The tenant's environment: its variables, and (with the storage bindings) its stores.
///
/// Cheap to clone; clones share the `wait_until` queue.
#[derive(Clone, Default)]
pub struct Env {
    after_response: Rc<RefCell<Vec<Task>>>,
}

impl Env {
    pub(crate) fn new() -> Env {
        Env::default()
    }

    /// A variable from the tenant's `vars` in the node config.
    pub fn var(&self, name: &str) -> Option<String> {
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
