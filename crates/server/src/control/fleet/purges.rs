//! Purges for the whole fleet: published through any node, applied by every node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::{APPLY_WAIT, FleetLink, fleet_error};
use crate::control::history::write_durably;
use crate::control::{Control, ControlError};

impl Control {
    /// A purge through the admin API on a fleet node: checked here, published to the
    /// fleet, answered once this node has applied it (every other node applies it as it
    /// arrives).
    pub async fn purge_in_fleet(&self, name: &str, body: &[u8]) -> Result<bool, ControlError> {
        let Some(link) = self.fleet.get().cloned() else {
            return Ok(false);
        };
        let purge = crate::admin::parse_purge(body).map_err(|reason| ControlError::Invalid {
            tenant: name.to_string(),
            reason,
        })?;
        self.check_purge(name)?;
        let sequence = link
            .purges
            .publish(name, body)
            .await
            .map_err(|e| fleet_error(name, e.to_string()))?;
        let started = Instant::now();
        while self
            .purged_through
            .load(std::sync::atomic::Ordering::SeqCst)
            < sequence
        {
            if started.elapsed() > APPLY_WAIT {
                return Err(fleet_error(
                    name,
                    format!(
                        "published to the fleet, but this node did not apply it within {APPLY_WAIT:?}"
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::info!(tenant = %name, ?purge, "cache purged across the fleet");
        Ok(true)
    }

    /// Applies the fleet's purges as they come, from the last one this node applied.
    pub(super) async fn follow_purges(self: Arc<Self>, link: FleetLink) {
        let mark = self
            .config()
            .node
            .data_dir
            .join("fleet")
            .join("purged-through");
        let mut after: Option<u64> = std::fs::read_to_string(&mark)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        loop {
            match link.purges.follow(after).await {
                Ok((purges, missed)) => {
                    if missed {
                        tracing::warn!(
                            "this node was away longer than the fleet keeps purges; purging every tenant's cache"
                        );
                        for tenant in self.tenants() {
                            let _ =
                                self.purge(&tenant.info().name, &outpost_cache::Purge::Everything);
                        }
                    }
                    let mut purges = std::pin::pin!(purges);
                    while let Some(purge) = purges.next().await {
                        match crate::admin::parse_purge(&purge.body) {
                            Ok(what) => match self.purge(&purge.tenant, &what) {
                                Ok(())
                                | Err(ControlError::NoSuchTenant(_) | ControlError::NoCache(_)) => {
                                }
                                Err(error) => {
                                    tracing::warn!(tenant = %purge.tenant, "fleet purge: {error}")
                                }
                            },
                            Err(error) => {
                                tracing::warn!(tenant = %purge.tenant, "a fleet purge was refused: {error}")
                            }
                        }
                        after = Some(purge.sequence);
                        self.purged_through
                            .store(purge.sequence, std::sync::atomic::Ordering::SeqCst);
                        let _ = write_durably(&mark, purge.sequence.to_string().as_bytes());
                    }
                }
                Err(error) => tracing::debug!(%error, "cannot follow the fleet's purges yet"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
