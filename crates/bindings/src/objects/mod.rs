//! Durable Objects (`outpost:edge/durable-object`): a tenant's object classes, ids,
//! each object's storage, and the hand-off of a guest's request to an object.
//!
//! The capability's parts: [`ObjectsCtx`] (the tenant's classes by binding name and
//! where object databases live), [`ObjectsCtxView`], [`ObjectsView`] and
//! [`add_to_linker`]. Running objects (one live instance each, one event at a time) is
//! the runtime's job behind [`ObjectRouter`]; this crate only finds the object a request
//! is for (`deliver`) and gives an object's instance its storage ([`ObjectStorage`]).

mod alarms;
mod host;
mod id;
mod sockets;
mod storage;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi_http::WasiBody;

pub use alarms::{ALARM_FIRST_BACKOFF, ALARM_RETRIES, AlarmIndex, DueAlarm, NextAlarm};
pub use id::{IdError, NamespaceKey, ObjectId};
pub use sockets::{
    CLOSE_CODE_HEADER, EVENT_SOCKET_HEADER, MAX_ATTACHMENT_BYTES, MAX_TAG_BYTES, MAX_TAGS,
    MESSAGE_KIND_HEADER, ObjectSockets, SOCKET_HEADER, SocketMessage, SocketOwner,
};
pub use storage::ObjectStorage;

use crate::meters::StoreMeters;
use crate::sql::{SqlBackend, SqlError};

/// The header a guest's outbound request carries to go to an object instead of the
/// network: `<BINDING> <id>`. The SDK's stub sets it; the node removes it.
pub const OBJECT_HEADER: &str = "outpost-object";

/// The header that tells an object's instance which event a request carries: absent for
/// a request, `alarm` for its alarm. Only the node sets it: a guest's is removed.
pub const EVENT_HEADER: &str = "outpost-event";

/// On an alarm event: how many times it was retried before (Workers' `retryCount`).
pub const ALARM_ATTEMPT_HEADER: &str = "outpost-alarm-retry";

/// One class of a tenant, as a binding names it.
pub struct ObjectNamespace {
    /// The tenant.
    pub tenant: Arc<str>,
    /// The binding name its guests open it by.
    pub binding: String,
    /// The class (part of every object's address).
    pub class: Arc<str>,
    /// Live objects with no event for this long are dropped from memory.
    pub idle_timeout: Duration,
    /// Mixed into every id of the class.
    pub key: NamespaceKey,
    /// WebSockets one object may hold open.
    pub max_sockets: u32,
    /// Bytes of one WebSocket message.
    pub max_message: u64,
}

/// The object a request comes from: its class and id.
pub type Caller = Option<(Arc<str>, ObjectId)>;

/// Delivers requests to objects; the runtime implements it.
#[async_trait]
pub trait ObjectRouter: Send + Sync + 'static {
    /// Runs `request` as an event of object `id` of `namespace` and answers its response
    /// (an error status with the reason if the object failed). `request_id` is the id of
    /// the request that sent it; `caller` is the object it comes from, if one.
    async fn fetch(
        &self,
        namespace: Arc<ObjectNamespace>,
        id: ObjectId,
        request_id: Option<Arc<str>>,
        caller: Caller,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, wasmtime_wasi_http::Error>;

    /// The node's WebSockets of objects.
    fn sockets(&self) -> &dyn ObjectSockets;
}

/// One tenant's object classes.
pub struct ObjectsCtx {
    tenant: Arc<str>,
    namespaces: BTreeMap<String, Arc<ObjectNamespace>>,
    databases: Arc<dyn SqlBackend>,
    /// Bytes each object's database may grow to (`limits.sql_size`).
    max_database_bytes: u64,
    /// No result is built larger than the guest could hold (`limits.memory`).
    max_result_bytes: u64,
    meters: StoreMeters,
    /// Requests to objects count as subrequests (`limits.subrequests`).
    pub(crate) max_subrequests: u32,
    /// Set by the runtime once the tenant is loaded; weak, as the runtime's router holds
    /// the instances that hold this context.
    router: OnceLock<Weak<dyn ObjectRouter>>,
    /// The tenant's alarms, opened on first use.
    alarms: OnceLock<Arc<AlarmIndex>>,
}

impl ObjectsCtx {
    /// `tenant`'s classes (`durable_objects` in its config), their databases on
    /// `databases` under the tenant's SQL size and memory limits.
    pub fn new(
        config: &outpost_config::TenantConfig,
        databases: Arc<dyn SqlBackend>,
        meters: StoreMeters,
    ) -> ObjectsCtx {
        let tenant: Arc<str> = Arc::from(config.name.as_str());
        let namespaces = config
            .durable_objects
            .iter()
            .map(|(binding, class)| {
                let namespace = ObjectNamespace {
                    tenant: tenant.clone(),
                    binding: binding.clone(),
                    class: Arc::from(class.class.as_str()),
                    idle_timeout: class.idle_timeout,
                    key: NamespaceKey::new(&config.name, &class.class),
                    max_sockets: class.max_sockets,
                    max_message: class.max_message,
                };
                (binding.clone(), Arc::new(namespace))
            })
            .collect();
        ObjectsCtx {
            tenant,
            namespaces,
            databases,
            max_database_bytes: config.limits.sql_size,
            max_result_bytes: config.limits.memory,
            meters,
            max_subrequests: config.limits.subrequests,
            router: OnceLock::new(),
            alarms: OnceLock::new(),
        }
    }

    /// The tenant's alarm table.
    pub fn alarms(&self) -> Result<Arc<AlarmIndex>, SqlError> {
        if let Some(alarms) = self.alarms.get() {
            return Ok(alarms.clone());
        }
        // `_` cannot start a class's directory, so the file is the node's own.
        let database = self
            .databases
            .open(&self.tenant, "_alarms", self.max_database_bytes)?;
        Ok(self
            .alarms
            .get_or_init(|| Arc::new(AlarmIndex::new(database)))
            .clone())
    }

    /// The namespace of `class`.
    pub fn namespace_of_class(&self, class: &str) -> Option<&Arc<ObjectNamespace>> {
        self.namespaces.values().find(|n| &*n.class == class)
    }

    /// Whether the tenant declares any class.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    /// Gives the context the runtime's router (once).
    pub fn set_router(&self, router: Weak<dyn ObjectRouter>) {
        let _ = self.router.set(router);
    }

    /// The class bound as `binding`.
    pub fn namespace(&self, binding: &str) -> Option<&Arc<ObjectNamespace>> {
        self.namespaces.get(binding)
    }

    /// Opens the storage of object `id` of `namespace`, for the instance that runs it.
    pub fn storage(
        &self,
        namespace: &ObjectNamespace,
        id: ObjectId,
    ) -> Result<ObjectStorage, SqlError> {
        let file = format!("{}/{id}", namespace.class);
        let database = self
            .databases
            .open(&self.tenant, &file, self.max_database_bytes)?;
        Ok(ObjectStorage::new(
            database,
            self.max_result_bytes,
            self.meters.clone(),
            self.tenant.clone(),
        ))
    }

    /// The runtime's router, while the tenant version runs.
    pub fn router(&self) -> Option<Arc<dyn ObjectRouter>> {
        self.router.get().and_then(Weak::upgrade)
    }

    /// Sends `request` to the object its [`OBJECT_HEADER`] names (`target`).
    pub async fn deliver(
        &self,
        target: &str,
        request_id: Option<Arc<str>>,
        caller: Caller,
        mut request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, wasmtime_wasi_http::Error> {
        // A guest's request is a request: only the node sends other events.
        request.headers_mut().remove(EVENT_HEADER);
        for header in [
            ALARM_ATTEMPT_HEADER,
            EVENT_SOCKET_HEADER,
            MESSAGE_KIND_HEADER,
            CLOSE_CODE_HEADER,
        ] {
            request.headers_mut().remove(header);
        }
        let refused = |why: String| {
            tracing::warn!(tenant = %self.tenant, "request to an object refused: {why}");
            wasmtime_wasi_http::Error::InternalError(Some(why))
        };
        let Some((binding, id)) = target.split_once(' ') else {
            return Err(refused(format!(
                "`{OBJECT_HEADER}: {target}` should be `<BINDING> <id>`"
            )));
        };
        let Some(namespace) = self.namespaces.get(binding) else {
            return Err(refused(format!(
                "durable object binding `{binding}` is not declared for tenant `{}`; add durable_objects = {{ {binding} = {{ class = \"…\" }} }} to its config",
                self.tenant
            )));
        };
        let id = namespace
            .key
            .parse(id, &namespace.class)
            .map_err(|e| refused(e.to_string()))?;
        if let Some((class, caller)) = &caller
            && *class == namespace.class
            && *caller == id
        {
            // Its events run one at a time: this one would wait for itself.
            return Err(refused(
                "an object cannot send a request to itself; call the method directly".into(),
            ));
        }
        let Some(router) = self.router.get().and_then(Weak::upgrade) else {
            return Err(refused("the tenant's objects are not running".into()));
        };
        router
            .fetch(namespace.clone(), id, request_id, caller, request)
            .await
    }
}

/// The object an instance runs as, for its whole life.
pub struct ObjectSelf {
    /// Its class.
    pub namespace: Arc<ObjectNamespace>,
    /// Its id.
    pub id: ObjectId,
    /// Its storage.
    pub storage: ObjectStorage,
}

/// What a durable-object host call sees.
pub struct ObjectsCtxView<'a> {
    /// The tenant's classes.
    pub ctx: &'a ObjectsCtx,
    /// The instance's resource table.
    pub table: &'a mut ResourceTable,
    /// The object this instance is, if it is one.
    pub current: Option<&'a ObjectSelf>,
    /// When the current event must be done: statements are interrupted after it.
    pub deadline: Option<Instant>,
}

/// Implemented by store data that offers the `durable-object` interface.
pub trait ObjectsView: Send {
    /// The view for one host call.
    fn objects(&mut self) -> ObjectsCtxView<'_>;
}

struct HasObjects;

impl HasData for HasObjects {
    type Data<'a> = ObjectsCtxView<'a>;
}

/// Adds `outpost:edge/durable-object` to `linker`.
pub fn add_to_linker<T: ObjectsView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    crate::generated::outpost::edge::durable_object::add_to_linker::<T, HasObjects>(
        linker,
        T::objects,
    )
}

/// A namespace handle in a guest's resource table.
pub struct NamespaceHandle {
    pub(crate) namespace: Arc<ObjectNamespace>,
}
