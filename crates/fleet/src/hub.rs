//! The connection to the fleet's hub.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use outpost_config::FleetConfig;

/// How long one JetStream request (a publish's ack, a read) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the fleet could not be joined or used.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("[fleet] token_env: the environment variable `{0}` is not set")]
    MissingToken(String),
    #[error("[fleet] credentials: cannot read {path}: {source}")]
    Credentials {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the fleet's hub ({urls}): {reason}")]
    Connect { urls: String, reason: String },
    #[error("the fleet's hub refused to set up bucket `{bucket}`: {reason}")]
    Bucket { bucket: String, reason: String },
    #[error("cannot open the global KV cache at {path}: {source}")]
    Cache { path: String, source: sled::Error },
}

/// This node's connection to the hub. Connecting never waits for the hub: a node that
/// starts while the hub is down serves what it has and joins when the hub is back.
#[derive(Clone)]
pub struct Hub {
    pub(crate) client: async_nats::Client,
    pub(crate) jetstream: jetstream::Context,
    pub(crate) config: FleetConfig,
    connected: Arc<AtomicBool>,
}

impl Hub {
    /// Starts connecting to `config`'s servers as node `node_id`.
    pub async fn connect(config: &FleetConfig, node_id: &str) -> Result<Hub, FleetError> {
        let connected = Arc::new(AtomicBool::new(false));
        let events = connected.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("outpost {node_id}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100 * attempts as u64).min(2_000))
            })
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            events.store(true, Ordering::SeqCst);
                            tracing::info!("connected to the fleet's hub");
                        }
                        async_nats::Event::Disconnected => {
                            events.store(false, Ordering::SeqCst);
                            tracing::warn!(
                                "lost the fleet's hub; serving from this node's copies until it is back"
                            );
                        }
                        // A wrong token or credentials file shows here, once per attempt.
                        async_nats::Event::ClientError(error) => {
                            tracing::warn!(%error, "the fleet's hub refused this node");
                        }
                        async_nats::Event::ServerError(error) => {
                            tracing::warn!(%error, "the fleet's hub reported an error");
                        }
                        other => tracing::debug!(event = %other, "fleet hub event"),
                    }
                }
            });
        if let Some(var) = &config.token_env {
            let token = std::env::var(var).map_err(|_| FleetError::MissingToken(var.clone()))?;
            options = options.token(token);
        }
        if let Some(path) = &config.credentials {
            options =
                options
                    .credentials_file(path)
                    .await
                    .map_err(|source| FleetError::Credentials {
                        path: path.display().to_string(),
                        source,
                    })?;
        }
        let urls = config.nats.join(", ");
        let client =
            options
                .connect(config.nats.as_slice())
                .await
                .map_err(|e| FleetError::Connect {
                    urls: urls.clone(),
                    reason: e.to_string(),
                })?;
        let jetstream = jetstream::context::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        Ok(Hub {
            client,
            jetstream,
            config: config.clone(),
            connected,
        })
    }

    /// Whether the hub is reachable now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
            && self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Waits until the hub is reachable, up to `timeout`; whether it is.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_connected() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// The fleet's KV bucket `<fleet>-<what>`, created (with the fleet's replicas, on
    /// disk) if the hub does not have it yet.
    pub(crate) async fn kv_bucket(
        &self,
        what: &str,
        description: &str,
        history: i64,
    ) -> Result<jetstream::kv::Store, String> {
        let bucket = self.bucket(what);
        if let Ok(store) = self.jetstream.get_key_value(&bucket).await {
            return Ok(store);
        }
        self.jetstream
            .create_key_value(jetstream::kv::Config {
                bucket: bucket.clone(),
                description: description.into(),
                history,
                num_replicas: self.config.replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                format!(
                    "the fleet's hub cannot create bucket `{bucket}` with {} replicas: {e}",
                    self.config.replicas
                )
            })
    }

    /// The fleet's bucket called `what` (`<fleet>-<what>`).
    pub(crate) fn bucket(&self, what: &str) -> String {
        format!("{}-{what}", self.config.name)
    }
}
