//! The `outpost:edge/blob` host calls.

use std::sync::Arc;

use wasmtime::component::Resource;

use super::file::Sidecar;
use super::keys::{attributes, object_path};
use super::{BlobBucket, BlobCtxView, BucketHandle, Upload};
use crate::generated::outpost::edge::blob::{
    ByteRange, Host, HostBucket, HostUpload, ListOptions, ListResult, Object, ObjectInfo,
    PutOptions,
};
use crate::{EdgeError, EdgeResult};

impl BlobCtxView<'_> {
    fn bucket(&self, handle: &Resource<BucketHandle>) -> EdgeResult<Arc<BlobBucket>> {
        Ok(self.table.get(handle)?.bucket.clone())
    }

    fn timed(&self, op: &'static str) -> crate::meters::OperationTimer {
        self.ctx.meters.time(&self.ctx.tenant, "blob", op)
    }
}

crate::error::convert_edge_errors!(BlobCtxView<'_>);

impl HostBucket for BlobCtxView<'_> {
    async fn open(&mut self, name: String) -> EdgeResult<Resource<BucketHandle>> {
        let Some(bucket) = self.ctx.buckets.get(&name) else {
            return Err(crate::undeclared("blob", &name, &self.ctx.tenant));
        };
        let handle = BucketHandle {
            bucket: bucket.clone(),
        };
        Ok(self.table.push(handle)?)
    }

    async fn head(
        &mut self,
        this: Resource<BucketHandle>,
        key: String,
    ) -> EdgeResult<Option<ObjectInfo>> {
        let _timer = self.timed("head");
        self.bucket(&this)?.head(&key).await
    }

    async fn get(
        &mut self,
        this: Resource<BucketHandle>,
        key: String,
        range: Option<ByteRange>,
    ) -> EdgeResult<Option<Object>> {
        let _timer = self.timed("get");
        let bucket = self.bucket(&this)?;
        let Some(found) = bucket.get(&key, range).await? else {
            return Ok(None);
        };
        let body = self.table.push(found.body)?;
        Ok(Some(Object {
            info: found.info,
            range_offset: found.offset,
            range_length: found.length,
            body,
        }))
    }

    async fn put(
        &mut self,
        this: Resource<BucketHandle>,
        key: String,
        options: PutOptions,
    ) -> EdgeResult<Resource<Upload>> {
        let bucket = self.bucket(&this)?;
        let path = object_path(&key)?;
        let attributes = attributes(&options)?;
        let sidecar = bucket.file.is_some().then(|| Sidecar {
            etag: None,
            content_type: options.content_type.clone(),
            metadata: options.metadata.clone(),
        });
        let upload = Upload::start(bucket, key, path, attributes, sidecar);
        Ok(self.table.push(upload)?)
    }

    async fn delete(&mut self, this: Resource<BucketHandle>, key: String) -> EdgeResult<()> {
        let _timer = self.timed("delete");
        self.bucket(&this)?.delete(&key).await
    }

    async fn list(
        &mut self,
        this: Resource<BucketHandle>,
        options: ListOptions,
    ) -> EdgeResult<ListResult> {
        let _timer = self.timed("list");
        self.bucket(&this)?.list(options).await
    }

    async fn drop(&mut self, this: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl HostUpload for BlobCtxView<'_> {
    async fn body(
        &mut self,
        this: Resource<Upload>,
    ) -> EdgeResult<Resource<wasmtime_wasi::p2::DynOutputStream>> {
        let upload = self.table.get_mut(&this)?;
        let Some(stream) = upload.take_body() else {
            return Err(EdgeError::invalid("the upload's body was already taken"));
        };
        let stream: wasmtime_wasi::p2::DynOutputStream = Box::new(stream);
        Ok(self.table.push_child(stream, &this)?)
    }

    async fn finish(&mut self, this: Resource<Upload>) -> EdgeResult<ObjectInfo> {
        let _timer = self.timed("put");
        if self.table.iter_children(&this)?.next().is_some() {
            return Err(EdgeError::invalid(
                "drop the upload's body stream before calling finish",
            ));
        }
        let upload = self.table.delete(this)?;
        upload.finish().await
    }

    async fn drop(&mut self, this: Resource<Upload>) -> wasmtime::Result<()> {
        // Dropping the body stream with it, if the guest still holds it, is the guest's
        // error; the upload is discarded either way.
        self.table.delete(this)?;
        Ok(())
    }
}

impl Host for BlobCtxView<'_> {}
