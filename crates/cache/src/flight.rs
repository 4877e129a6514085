//! Collapsed misses: while one request fetches a key, the others for that key wait for
//! its result instead of all going to the guest or origin (nginx's `proxy_cache_lock`,
//! Varnish's and Fastly's request collapsing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::entry::Entry;

/// A fetch in progress, or its outcome.
#[derive(Clone)]
enum State {
    Running,
    /// The stored entry, or `None` when nothing was stored (uncacheable, failed or
    /// abandoned): waiters then go on their own.
    Done(Option<Arc<Entry>>),
}

/// The fetches in progress of one cache, by key.
#[derive(Default)]
pub struct Flights {
    running: Mutex<HashMap<String, watch::Receiver<State>>>,
}

/// What a miss should do.
pub enum Joined {
    /// Fetch it, and report through the guard.
    Lead(Leader),
    /// Wait for the fetch already running.
    Follow(Follower),
    /// A fetch stored the key and finished between the caller's lookup and its join:
    /// serve this (only [`crate::TenantCache::join`] answers it).
    Stored(std::sync::Arc<crate::Entry>),
}

/// The one request fetching a key. Dropping it without [`Leader::finish`] (the request
/// was cancelled) releases the waiters.
pub struct Leader {
    key: String,
    flights: Arc<Flights>,
    sender: watch::Sender<State>,
    finished: bool,
}

/// A request waiting for a leader.
pub struct Follower(watch::Receiver<State>);

impl Flights {
    /// Joins the fetch of `key`, leading it if none is running.
    pub fn join(self: &Arc<Self>, key: &str) -> Joined {
        let mut running = self.lock();
        if let Some(receiver) = running.get(key) {
            return Joined::Follow(Follower(receiver.clone()));
        }
        let (sender, receiver) = watch::channel(State::Running);
        running.insert(key.to_string(), receiver);
        Joined::Lead(Leader {
            key: key.to_string(),
            flights: self.clone(),
            sender,
            finished: false,
        })
    }

    /// Leads the fetch of `key` only if none is running (a background refresh).
    pub fn try_lead(self: &Arc<Self>, key: &str) -> Option<Leader> {
        match self.join(key) {
            Joined::Lead(leader) => Some(leader),
            Joined::Follow(_) | Joined::Stored(_) => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<State>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Leader {
    /// Hands the outcome to every waiter.
    pub fn finish(mut self, stored: Option<Arc<Entry>>) {
        self.release(stored);
    }

    fn release(&mut self, stored: Option<Arc<Entry>>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.flights.lock().remove(&self.key);
        let _ = self.sender.send(State::Done(stored));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.release(None);
    }
}

impl Follower {
    /// The leader's entry; `None` if it stored nothing or did not finish within `patience`.
    pub async fn wait(mut self, patience: Duration) -> Option<Arc<Entry>> {
        let outcome = tokio::time::timeout(
            patience,
            self.0.wait_for(|state| matches!(state, State::Done(_))),
        )
        .await;
        match outcome {
            Ok(Ok(state)) => match &*state {
                State::Done(entry) => entry.clone(),
                State::Running => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_outcome_and_a_dropped_leader_releases_them() {
        let flights = Arc::new(Flights::default());
        let Joined::Lead(leader) = flights.join("k") else {
            panic!("first is the leader")
        };
        let Joined::Follow(follower) = flights.join("k") else {
            panic!("second follows")
        };
        assert!(flights.try_lead("k").is_none());
        let waiting = tokio::spawn(follower.wait(Duration::from_secs(30)));
        drop(leader);
        assert!(waiting.await.expect("join").is_none());
        assert!(flights.lock().is_empty());
        assert!(flights.try_lead("k").is_some(), "a new fetch may lead");
    }

    #[tokio::test]
    async fn a_follower_stops_waiting_after_its_patience() {
        let flights = Arc::new(Flights::default());
        let _leader = flights.join("k");
        let Joined::Follow(follower) = flights.join("k") else {
            panic!("follows")
        };
        assert!(follower.wait(Duration::from_millis(10)).await.is_none());
    }
}
