//! The `outpost:edge/durable-object` host calls.

use wasmtime::component::Resource;

use super::storage::ListRange;
use super::{
    MAX_ATTACHMENT_BYTES, MAX_TAG_BYTES, MAX_TAGS, NamespaceHandle, ObjectNamespace, ObjectSelf,
    ObjectsCtxView, SocketMessage, SocketOwner,
};
use crate::generated::outpost::edge::durable_object::{
    Host, HostNamespace, ListOptions, ObjectId as WitObjectId,
};
use crate::generated::outpost::edge::sql::{StatementResult, Value};
use crate::sql::TransactionStep;
use crate::{EdgeError, EdgeResult};

fn wit_id(namespace: &ObjectNamespace, id: super::ObjectId, name: Option<String>) -> WitObjectId {
    WitObjectId {
        class: namespace.class.to_string(),
        id: id.to_string(),
        name,
    }
}

impl ObjectsCtxView<'_> {
    fn namespace(&self, handle: &Resource<NamespaceHandle>) -> EdgeResult<&ObjectNamespace> {
        Ok(&self.table.get(handle)?.namespace)
    }

    /// The current object, as its sockets' owner, and the router that holds them.
    fn sockets(&self) -> EdgeResult<(SocketOwner, std::sync::Arc<dyn super::ObjectRouter>)> {
        let object = self.object()?;
        let router = self
            .ctx
            .router()
            .ok_or_else(|| EdgeError::unavailable("the tenant's objects are not running"))?;
        let owner = SocketOwner {
            namespace: object.namespace.clone(),
            id: object.id,
        };
        Ok((owner, router))
    }

    fn object(&self) -> EdgeResult<&ObjectSelf> {
        self.current.ok_or_else(|| {
            EdgeError::invalid(
                "object storage is only reachable from inside an object (this instance is a plain request)",
            )
        })
    }
}

crate::error::convert_edge_errors!(ObjectsCtxView<'_>);

impl HostNamespace for ObjectsCtxView<'_> {
    async fn open(&mut self, binding: String) -> EdgeResult<Resource<NamespaceHandle>> {
        let Some(namespace) = self.ctx.namespace(&binding).cloned() else {
            return Err(crate::ErrorCode::NoSuchBinding(format!(
                "durable object binding `{binding}` is not declared for tenant `{}`; add durable_objects = {{ {binding} = {{ class = \"…\" }} }} to its config",
                self.ctx.tenant
            ))
            .into());
        };
        Ok(self.table.push(NamespaceHandle { namespace })?)
    }

    async fn id_from_name(
        &mut self,
        this: Resource<NamespaceHandle>,
        name: String,
    ) -> wasmtime::Result<WitObjectId> {
        let namespace = &self.table.get(&this)?.namespace;
        Ok(wit_id(
            namespace,
            namespace.key.id_from_name(&name),
            Some(name),
        ))
    }

    async fn new_unique_id(
        &mut self,
        this: Resource<NamespaceHandle>,
    ) -> wasmtime::Result<WitObjectId> {
        let namespace = &self.table.get(&this)?.namespace;
        Ok(wit_id(namespace, namespace.key.new_unique_id(), None))
    }

    async fn id_from_string(
        &mut self,
        this: Resource<NamespaceHandle>,
        id: String,
    ) -> EdgeResult<WitObjectId> {
        let namespace = self.namespace(&this)?;
        let id = namespace
            .key
            .parse(&id, &namespace.class)
            .map_err(|e| EdgeError::invalid(e.to_string()))?;
        Ok(wit_id(namespace, id, None))
    }

    async fn drop(&mut self, this: Resource<NamespaceHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl Host for ObjectsCtxView<'_> {
    async fn current(&mut self) -> wasmtime::Result<Option<WitObjectId>> {
        Ok(self
            .current
            .map(|object| wit_id(&object.namespace, object.id, None)))
    }

    async fn storage_get(&mut self, keys: Vec<String>) -> EdgeResult<Vec<(String, Vec<u8>)>> {
        self.object()?.storage.get(keys, self.deadline).await
    }

    async fn storage_put(&mut self, entries: Vec<(String, Vec<u8>)>) -> EdgeResult<()> {
        self.object()?.storage.put(entries, self.deadline).await
    }

    async fn storage_delete(&mut self, keys: Vec<String>) -> EdgeResult<u32> {
        self.object()?.storage.delete(keys, self.deadline).await
    }

    async fn storage_list(&mut self, options: ListOptions) -> EdgeResult<Vec<(String, Vec<u8>)>> {
        let range = ListRange {
            start: options.start,
            start_after: options.start_after,
            end: options.end,
            prefix: options.prefix,
            reverse: options.reverse,
            limit: options.limit,
        };
        self.object()?.storage.list(range, self.deadline).await
    }

    async fn storage_delete_all(&mut self) -> EdgeResult<()> {
        self.object()?.storage.delete_all(self.deadline).await
    }

    async fn sql_exec(&mut self, sql: String, params: Vec<Value>) -> EdgeResult<StatementResult> {
        self.object()?
            .storage
            .exec(sql, params, self.deadline)
            .await
    }

    async fn transaction_begin(&mut self) -> EdgeResult<()> {
        self.object()?
            .storage
            .transaction(TransactionStep::Begin)
            .await
    }

    async fn transaction_commit(&mut self) -> EdgeResult<()> {
        self.object()?
            .storage
            .transaction(TransactionStep::Commit)
            .await
    }

    async fn transaction_rollback(&mut self) -> EdgeResult<()> {
        self.object()?
            .storage
            .transaction(TransactionStep::Rollback)
            .await
    }

    async fn set_alarm(&mut self, scheduled_ms: i64) -> EdgeResult<()> {
        let object = self.object()?;
        let id = object.id.to_string();
        let alarms = self.ctx.alarms()?;
        alarms
            .set(&object.namespace.class, &id, scheduled_ms)
            .await?;
        Ok(())
    }

    async fn get_alarm(&mut self) -> EdgeResult<Option<i64>> {
        let object = self.object()?;
        let id = object.id.to_string();
        Ok(self.ctx.alarms()?.get(&object.namespace.class, &id).await?)
    }

    async fn delete_alarm(&mut self) -> EdgeResult<()> {
        let object = self.object()?;
        let id = object.id.to_string();
        self.ctx
            .alarms()?
            .delete(&object.namespace.class, &id)
            .await?;
        Ok(())
    }

    async fn accept_web_socket(&mut self, tags: Vec<String>) -> EdgeResult<String> {
        if tags.len() > MAX_TAGS || tags.iter().any(|t| t.len() > MAX_TAG_BYTES) {
            return Err(EdgeError::limit(
                "durable_object.tags",
                format!("a socket takes at most {MAX_TAGS} tags of at most {MAX_TAG_BYTES} bytes"),
            ));
        }
        let (owner, router) = self.sockets()?;
        router.sockets().accept(&owner, tags)
    }

    async fn web_socket_send(&mut self, socket: String, message: SocketMessage) -> EdgeResult<()> {
        let (owner, router) = self.sockets()?;
        router.sockets().send(&owner, &socket, message)
    }

    async fn web_socket_close(
        &mut self,
        socket: String,
        code: u16,
        reason: String,
    ) -> EdgeResult<()> {
        if reason.len() > 123 {
            return Err(EdgeError::invalid("a close reason is at most 123 bytes"));
        }
        let (owner, router) = self.sockets()?;
        router.sockets().close(&owner, &socket, code, reason)
    }

    async fn web_sockets(&mut self, tag: Option<String>) -> wasmtime::Result<Vec<String>> {
        Ok(match self.sockets() {
            Ok((owner, router)) => router.sockets().list(&owner, tag.as_deref()),
            Err(_) => Vec::new(),
        })
    }

    async fn web_socket_set_attachment(
        &mut self,
        socket: String,
        attachment: Vec<u8>,
    ) -> EdgeResult<()> {
        if attachment.len() > MAX_ATTACHMENT_BYTES {
            return Err(EdgeError::limit(
                "durable_object.attachment_bytes",
                format!("a socket's attachment is at most {MAX_ATTACHMENT_BYTES} bytes"),
            ));
        }
        let (owner, router) = self.sockets()?;
        router.sockets().set_attachment(&owner, &socket, attachment)
    }

    async fn web_socket_attachment(&mut self, socket: String) -> EdgeResult<Option<Vec<u8>>> {
        let (owner, router) = self.sockets()?;
        router.sockets().attachment(&owner, &socket)
    }

    async fn web_socket_tags(&mut self, socket: String) -> EdgeResult<Vec<String>> {
        let (owner, router) = self.sockets()?;
        router.sockets().tags(&owner, &socket)
    }
}
