//! A tenant: its pre-instantiated component, its limits, and the per-request path from an
//! HTTP request to a guest's response.
//!
//! Requests are dispatched by wasmtime-wasi-http's [`ProxyHandler`], which serves both
//! `wasi:http/incoming-handler@0.2.x` and `wasi:http/handler@0.3.x` guests. Its worker
//! state is where outpost applies limits: each instance accepts one request (or, with
//! `reuse`, up to [`crate::REUSE_MAX_REQUESTS`] one after another), and every request starts
//! with a full fuel tank, a fresh CPU meter and its own deadline.

use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use outpost_bindings::StoresError;
use outpost_bindings::objects::ObjectRouter;
use outpost_config::{Limits, TenantConfig};
use tokio::sync::Semaphore;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{ProxyHandler, ProxyPre};

use crate::compile_cache::{CacheOutcome, hex};
use crate::compiler::CompileFailure;
use crate::engine::Runtime;
use crate::error::{Failure, LoadError, TenantLoadError, classify};
use crate::instance::TenantInstances;
use crate::limits::body::body_with_limit;
use crate::limits::lanes::lanes_per_tenant;
use crate::objects::TenantObjects;
use crate::parallel::in_parallel;
use crate::scope::{LimitHit, RequestScope};

/// After a request fails, how long to wait for its instance's exit verdict (which says
/// whether fuel ran out) before answering with what is known.
const EXIT_VERDICT_WAIT: Duration = Duration::from_millis(250);

/// Which `wasi:http` world a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpWorld {
    /// `wasi:http/incoming-handler@0.2.x` (WASI 0.2).
    P2,
    /// `wasi:http/handler@0.3.x` (WASI 0.3).
    P3,
}

/// A client's request, as the guest will see it.
pub type GuestRequest = http::Request<WasiBody>;
/// The guest's response, its body streaming from the instance.
pub type GuestResponse = http::Response<WasiBody>;

/// Permission to run one request for a tenant; holds one of its concurrency slots, and
/// under `limits.per_client` one of its client's.
pub struct Admission {
    pub(crate) _slot: tokio::sync::OwnedSemaphorePermit,
    pub(crate) _client: Option<ClientSlot>,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The tenant is at `limits.concurrency`.
    TenantFull,
    /// The client already holds `limits.per_client` of the tenant's slots.
    ClientFull,
}

/// Slots held per client address, under `limits.per_client`.
type ClientSlots = Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, u32>>>;

/// One slot of a client's share, given back on drop.
pub(crate) struct ClientSlot {
    slots: ClientSlots,
    client: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(held) = slots.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                slots.remove(&self.client);
            }
        }
    }
}

/// Whom a share of slots belongs to: an IPv4 address, or an IPv6 /64 (what one
/// subscriber is usually given).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// What the node knows about a loaded tenant.
#[derive(Debug, Clone)]
pub struct TenantInfo {
    /// The tenant's name, as in its config.
    pub name: Arc<str>,
    /// SHA-256 of the component's wasm, hex.
    pub component_hash: String,
    /// Where the compiled code came from.
    pub cache: CacheOutcome,
    /// The world the component exports.
    pub world: HttpWorld,
    /// How long loading took.
    pub load_time: Duration,
}

/// A loaded tenant, ready to serve.
pub struct Tenant {
    info: TenantInfo,
    /// Keeps the compiled code in the runtime's shared map while this version lives.
    _code: Arc<crate::engine::LoadedComponent>,
    limits: Limits,
    concurrency: Arc<Semaphore>,
    /// Slots held per client, under `limits.per_client`.
    clients: ClientSlots,
    handler: ProxyHandler<TenantInstances>,
    /// This version's Durable Objects router (the tenant's bindings hold it weakly).
    objects: Option<Arc<TenantObjects>>,
}

impl Tenant {
    /// Reads, compiles (or loads from the cache), links and test-instantiates the tenant's
    /// component.
    pub fn load(
        runtime: &Arc<Runtime>,
        config: &TenantConfig,
    ) -> Result<Tenant, Box<TenantLoadError>> {
        let path = &config.component;
        let wasm = std::fs::read(path).map_err(|source| {
            Box::new(TenantLoadError {
                tenant: config.name.clone(),
                key: "component".into(),
                at: config.component_at.clone(),
                error: LoadError::Unreadable {
                    path: path.clone(),
                    source,
                },
            })
        })?;
        Tenant::load_wasm(runtime, config, &wasm, path)
    }

    /// Like [`Tenant::load`], with the component's bytes already read (a deploy through
    /// the admin API); `origin` names where they came from in errors.
    pub fn load_wasm(
        runtime: &Arc<Runtime>,
        config: &TenantConfig,
        wasm: &[u8],
        origin: &std::path::Path,
    ) -> Result<Tenant, Box<TenantLoadError>> {
        let started = Instant::now();
        let located = |error| {
            Box::new(TenantLoadError {
                tenant: config.name.clone(),
                key: "component".into(),
                at: config.component_at.clone(),
                error,
            })
        };
        let bindings = runtime.stores.tenant(config).map_err(|e| match e {
            StoresError::Blob {
                tenant,
                binding,
                at,
                source,
            } => Box::new(TenantLoadError {
                tenant,
                key: format!("blob.{binding}"),
                at,
                error: LoadError::Binding {
                    reason: source.to_string(),
                },
            }),
            other => located(LoadError::Binding {
                reason: other.to_string(),
            }),
        })?;
        let (component, cache, hash, code) =
            runtime.component(wasm).map_err(|failure| match failure {
                CompileFailure::Invalid(reason) => located(LoadError::NotAComponent {
                    path: origin.to_path_buf(),
                    reason,
                }),
                CompileFailure::Stopped(reason) => located(LoadError::NotCompiled {
                    path: origin.to_path_buf(),
                    reason,
                }),
            })?;
        let instance_pre = runtime.linker.instantiate_pre(&component).map_err(|e| {
            located(LoadError::Unlinkable {
                reason: format!("{e:#}"),
            })
        })?;
        let (pre, world) =
            match wasmtime_wasi_http::p3::bindings::ServicePre::new(instance_pre.clone()) {
                Ok(pre) => (ProxyPre::P3(pre), HttpWorld::P3),
                Err(_) => match wasmtime_wasi_http::p2::bindings::ProxyPre::new(instance_pre) {
                    Ok(pre) => (ProxyPre::P2(pre), HttpWorld::P2),
                    Err(e) => {
                        return Err(located(LoadError::NotHttp {
                            reason: format!("{e:#}"),
                        }));
                    }
                },
            };
        let name: Arc<str> = Arc::from(config.name.as_str());
        let instances = TenantInstances {
            name: name.clone(),
            lanes: Arc::new(Semaphore::new(lanes_per_tenant())),
            engine: runtime.engine.clone(),
            limits: config.limits.clone(),
            vars: config
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain(
                    config
                        .secrets
                        .iter()
                        .map(|(k, v)| (k.clone(), v.expose().to_string())),
                )
                .collect(),
            reuse: config.reuse,
            pre,
            bindings: Arc::new(bindings),
            meters: runtime.meters.tenant(&config.name),
        };
        instances.trial_instantiate().map_err(|e| {
            located(LoadError::Instantiate {
                reason: format!("{e:#}"),
            })
        })?;
        let objects_declared = !instances.bindings.objects.is_empty();
        if objects_declared && world == HttpWorld::P3 {
            return Err(Box::new(TenantLoadError {
                tenant: config.name.clone(),
                key: "durable_objects".into(),
                at: config.component_at.clone(),
                error: LoadError::Binding {
                    reason: "Durable Objects run wasi:http/incoming-handler@0.2 components only for now; build the tenant for WASI 0.2 (wasm32-wasip2)".into(),
                },
            }));
        }
        let handler = ProxyHandler::new(instances);
        let objects = objects_declared.then(|| {
            let objects = TenantObjects::new(
                handler.clone(),
                runtime.objects.clone(),
                runtime.tasks.as_ref(),
            );
            let router: Weak<dyn ObjectRouter> = Arc::downgrade(&objects) as _;
            handler.state().bindings.objects.set_router(router);
            objects
        });
        let info = TenantInfo {
            name,
            component_hash: hex(&hash),
            cache,
            world,
            load_time: started.elapsed(),
        };
        Ok(Tenant {
            info,
            _code: code,
            limits: config.limits.clone(),
            concurrency: Arc::new(Semaphore::new(config.limits.concurrency as usize)),
            clients: ClientSlots::default(),
            handler,
            objects,
        })
    }

    /// The node's directory of live objects and their sockets, if the tenant declares
    /// Durable Objects.
    pub fn object_directory(&self) -> Option<Arc<crate::ObjectDirectory>> {
        self.objects.as_ref().map(|objects| objects.directory())
    }

    /// What was loaded.
    pub fn info(&self) -> &TenantInfo {
        &self.info
    }

    /// The tenant's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Requests admitted and not yet finished.
    pub fn in_flight(&self) -> usize {
        (self.limits.concurrency as usize).saturating_sub(self.concurrency.available_permits())
    }

    /// Takes a concurrency slot for a request from `client`, unless the tenant is at its
    /// limit or the client at its share (never queues).
    pub fn try_admit(&self, client: IpAddr) -> Result<Admission, Refusal> {
        let Some(per_client) = self.limits.per_client else {
            let slot = self.concurrency.clone().try_acquire_owned();
            let slot = slot.map_err(|_| Refusal::TenantFull)?;
            return Ok(Admission {
                _slot: slot,
                _client: None,
            });
        };
        let client = client_key(client);
        let mut held = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = held.entry(client).or_insert(0);
        if *count >= per_client {
            return Err(Refusal::ClientFull);
        }
        let slot = self.concurrency.clone().try_acquire_owned();
        let Ok(slot) = slot else {
            if *count == 0 {
                held.remove(&client);
            }
            return Err(Refusal::TenantFull);
        };
        *count += 1;
        Ok(Admission {
            _slot: slot,
            _client: Some(ClientSlot {
                slots: self.clients.clone(),
                client,
            }),
        })
    }

    /// Runs one request in an instance and returns the guest's response.
    ///
    /// The admission is held until the instance lets go of the request: after the body
    /// has streamed and any work after the response has finished.
    pub async fn handle(
        &self,
        admission: Admission,
        request_id: Arc<str>,
        request: GuestRequest,
    ) -> Result<GuestResponse, Failure> {
        let scope = Arc::new(RequestScope::new(
            self.info.name.clone(),
            request_id,
            self.limits.timeout,
            self.limits.cpu,
            Some(admission),
        ));
        let request = request.map(|body| body_with_limit(body, self.limits.body, scope.clone()));
        let deadline = tokio::time::Instant::from_std(scope.deadline);
        let result =
            tokio::time::timeout_at(deadline, self.handler.handle(scope.clone(), request)).await;
        match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => {
                scope.wait_for_instance_exit(EXIT_VERDICT_WAIT).await;
                let failure = classify(&scope, &error);
                if failure == Failure::GuestError {
                    tracing::warn!(tenant = %scope.tenant, request_id = %scope.id, "guest failed: {error:#}");
                }
                Err(failure)
            }
            Err(_elapsed) => {
                // Marks the scope so the epoch callback interrupts a guest still running.
                scope.hit(LimitHit::Timeout);
                Err(Failure::Limit(LimitHit::Timeout))
            }
        }
    }
}

/// Loads every tenant, compiling on all cores at once; results are in `configs` order.
pub fn load_tenants(
    runtime: &Arc<Runtime>,
    configs: &[TenantConfig],
) -> Vec<Result<Tenant, Box<TenantLoadError>>> {
    in_parallel(configs, |config| Tenant::load(runtime, config))
}

#[cfg(test)]
mod tests {
    use super::client_key;
    use std::net::IpAddr;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_64() {
        assert_eq!(client_key(ip("203.0.113.5")), ip("203.0.113.5"));
        assert_eq!(client_key(ip("::ffff:203.0.113.5")), ip("203.0.113.5"));
        assert_eq!(client_key(ip("2001:db8:1:2::99")), ip("2001:db8:1:2::"));
        assert_ne!(client_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
    }
}
