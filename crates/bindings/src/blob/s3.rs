//! An `s3://` binding: any S3-compatible server, credentials from the node's environment.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use outpost_config::S3Store;

use super::BlobSetupError;

/// The store for `s3`, or which credential variables are missing.
pub(super) fn open(s3: &S3Store) -> Result<Arc<dyn ObjectStore>, BlobSetupError> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_region(s3.region.as_deref().unwrap_or("us-east-1"));
    match (
        std::env::var(&s3.access_key_id_env),
        std::env::var(&s3.secret_access_key_env),
    ) {
        (Ok(id), Ok(secret)) => {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        (id, secret) => {
            let missing = [
                (id.is_err(), &s3.access_key_id_env),
                (secret.is_err(), &s3.secret_access_key_env),
            ]
            .into_iter()
            .filter(|(missing, _)| *missing)
            .map(|(_, name)| name.clone())
            .collect();
            return Err(BlobSetupError::Credentials { missing });
        }
    }
    if let Some(endpoint) = &s3.endpoint {
        // S3-compatible servers: path-style addressing, plain HTTP if asked.
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    let store = builder.build().map_err(BlobSetupError::S3)?;
    Ok(if s3.prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(PrefixStore::new(store, s3.prefix.as_str()))
    })
}
