//! Purges of the tenants' response caches for the whole fleet: a purge through any node
//! goes into the stream `<fleet>-purges` (kept a week), and every node applies each one
//! to its own cache. A node remembers the last one it applied, so one that was down
//! applies those it missed when it returns, and purges everything if the stream no
//! longer reaches back that far (its disk tier may hold what was purged meanwhile).

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::stream::{Config, StorageType, Stream};
use bytes::Bytes;
use futures::StreamExt;

use crate::deploys::DeployError;
use crate::hub::Hub;

/// How long the hub keeps a purge for nodes that were away.
const KEPT_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// One purge as the stream delivers it.
#[derive(Debug)]
pub struct FleetPurge {
    /// Its sequence in the stream: a node applies each once, in order.
    pub sequence: u64,
    pub tenant: String,
    /// The admin API's purge request body.
    pub body: Bytes,
}

/// The fleet's purges.
#[derive(Clone)]
pub struct Purges {
    hub: Hub,
}

impl Purges {
    pub fn new(hub: &Hub) -> Purges {
        Purges { hub: hub.clone() }
    }

    fn subjects(&self) -> String {
        format!("outpost.{}.purge", self.hub.config.name)
    }

    async fn stream(&self) -> Result<Stream, DeployError> {
        let name = self.hub.bucket("purges");
        if let Ok(stream) = self.hub.jetstream.get_stream(&name).await {
            return Ok(stream);
        }
        self.hub
            .jetstream
            .create_stream(Config {
                name,
                subjects: vec![format!("{}.*", self.subjects())],
                max_age: KEPT_FOR,
                num_replicas: self.hub.config.replicas,
                storage: StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| DeployError::Unavailable(e.to_string()))
    }

    /// Publishes a purge of `tenant` (`body` as the admin API takes it); its sequence.
    pub async fn publish(&self, tenant: &str, body: &[u8]) -> Result<u64, DeployError> {
        self.stream().await?;
        let unavailable = |e: &dyn std::fmt::Display| DeployError::Unavailable(e.to_string());
        let ack = self
            .hub
            .jetstream
            .publish(
                format!("{}.{tenant}", self.subjects()),
                Bytes::copy_from_slice(body),
            )
            .await
            .map_err(|e| unavailable(&e))?
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(ack.sequence)
    }

    /// The purges after sequence `after` (`None`: after the last one now in the stream),
    /// and whether some after it are gone from the stream already.
    pub async fn follow(
        &self,
        after: Option<u64>,
    ) -> Result<(impl futures::Stream<Item = FleetPurge> + Send + use<>, bool), DeployError> {
        let mut stream = self.stream().await?;
        let unavailable = |e: &dyn std::fmt::Display| DeployError::Unavailable(e.to_string());
        let (first, last) = {
            let info = stream.info().await.map_err(|e| unavailable(&e))?;
            (info.state.first_sequence, info.state.last_sequence)
        };
        // A node new to the fleet starts after the last purge there is (not at "new",
        // which would miss one published while its consumer is being made).
        let missed = after.is_some_and(|seq| first > seq + 1);
        let start_sequence = after.unwrap_or(last) + 1;
        let deliver_policy = DeliverPolicy::ByStartSequence { start_sequence };
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.hub.client.new_inbox(),
                replay_policy: ReplayPolicy::Instant,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        let prefix = format!("{}.", self.subjects());
        let messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
        let purges = messages
            .take_while(|message| futures::future::ready(message.is_ok()))
            .filter_map(move |message| {
                let purge = message.ok().and_then(|message| {
                    let sequence = message.info().ok()?.stream_sequence;
                    let tenant = message
                        .subject
                        .as_str()
                        .strip_prefix(prefix.as_str())?
                        .to_string();
                    Some(FleetPurge {
                        sequence,
                        tenant,
                        body: message.payload.clone(),
                    })
                });
                futures::future::ready(purge)
            });
        Ok((purges, missed))
    }
}
