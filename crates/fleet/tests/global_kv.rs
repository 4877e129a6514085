//! Global KV against real `nats-server`s: the KV contract every backend meets, and what
//! only a shared store must do (one node's write read on another; increments and swaps
//! atomic across nodes).

use std::sync::Arc;
use std::time::Duration;

use outpost_bindings::kv::{GlobalKvBackend, KvBackend, KvError, KvStore, Swap, WriteOptions};
use outpost_fleet::testing::NatsCluster;
use outpost_fleet::{GlobalBackend, GlobalKv, Hub};

/// A node of the fleet: its hub connection and its global KV (cache in its own dir).
struct TestNode {
    kv: Arc<GlobalKv>,
    backend: GlobalBackend,
    ttl: Duration,
    _dir: tempfile::TempDir,
}

impl KvBackend for TestNode {
    fn open(&self, tenant: &str, binding: &str) -> Result<Arc<dyn KvStore>, KvError> {
        self.backend.open(tenant, binding, self.ttl)
    }
}

fn fleet_config(cluster: &NatsCluster, replicas: usize) -> outpost_config::FleetConfig {
    outpost_config::FleetConfig {
        nats: cluster.urls(),
        name: "test".into(),
        credentials: None,
        token_env: None,
        replicas,
    }
}

async fn node(cluster: &NatsCluster, replicas: usize, ttl: Duration) -> TestNode {
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = Hub::connect(&fleet_config(cluster, replicas), "test")
        .await
        .expect("connect");
    assert!(hub.wait_connected(Duration::from_secs(10)).await, "hub");
    let kv = GlobalKv::open(&hub, dir.path()).expect("open global kv");
    TestNode {
        backend: GlobalBackend(kv.clone()),
        kv,
        ttl,
        _dir: dir,
    }
}

outpost_bindings::kv_store_tests!(|| async {
    let cluster = NatsCluster::start(1).await;
    let node = node(&cluster, 1, Duration::from_secs(60)).await;
    (cluster, node)
});

/// Waits (up to 10 s) until `node`'s watch runs, so writes elsewhere reach its cache.
async fn watching(node: &TestNode) {
    for _ in 0..500 {
        if node.kv.is_watching() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the global KV watch did not start");
}

#[tokio::test]
async fn a_write_on_one_node_is_read_on_another_and_counters_stay_exact() {
    let cluster = NatsCluster::start(3).await;
    let (a, b) = (
        node(&cluster, 3, Duration::from_secs(3600)).await,
        node(&cluster, 3, Duration::from_secs(3600)).await,
    );
    let store_a = a.open("shop", "SESSIONS").expect("open");
    let store_b = b.open("shop", "SESSIONS").expect("open");
    watching(&b).await;
    let now = || 0;

    // B caches "absent"; A's write must still show on B, through the watch (the TTL is
    // an hour, so only the watch can make it show).
    assert_eq!(store_b.get(b"user", now()).await.expect("get"), None);
    store_a
        .put(b"user", b"ada", &WriteOptions::default())
        .await
        .expect("put");
    let mut seen = None;
    for _ in 0..500 {
        seen = store_b.get(b"user", now()).await.expect("get");
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.map(|s| s.value), Some(b"ada".to_vec()));

    // 2 nodes × 100 concurrent increments of one counter: exactly 200.
    let mut tasks = Vec::new();
    for store in [store_a.clone(), store_b.clone()] {
        for _ in 0..100 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.increment(b"hits", 1, None, 0).await
            }));
        }
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task").expect("increment"));
    }
    results.sort_unstable();
    assert_eq!(
        results,
        (1..=200).collect::<Vec<i64>>(),
        "each increment saw its own count"
    );
    assert_eq!(
        store_a.get(b"hits", 0).await.expect("get").map(|s| s.value),
        Some(b"200".to_vec())
    );

    // A compare-and-swap race between the nodes from the same version: one winner.
    let version = store_a
        .get(b"user", 0)
        .await
        .expect("get")
        .expect("present")
        .version;
    let race = |store: Arc<dyn KvStore>, value: &'static [u8]| async move {
        store
            .compare_and_swap(b"user", Some(version), value, &WriteOptions::default(), 0)
            .await
            .expect("cas")
    };
    let (first, second) = tokio::join!(race(store_a.clone(), b"a"), race(store_b.clone(), b"b"));
    let winners = [first, second]
        .iter()
        .filter(|s| matches!(s, Swap::Swapped(_)))
        .count();
    assert_eq!(winners, 1, "{first:?} {second:?}");
}

#[tokio::test]
async fn with_the_hub_down_cached_reads_go_on_and_writes_fail_clearly() {
    let mut cluster = NatsCluster::start(1).await;
    let a = node(&cluster, 1, Duration::from_millis(1)).await;
    let store = a.open("shop", "SESSIONS").expect("open");
    store
        .put(b"known", b"yes", &WriteOptions::default())
        .await
        .expect("put");
    cluster.kill_all();
    for _ in 0..500 {
        if !a.kv.is_watching() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Past its 1 ms TTL, the cached value is still served: the hub cannot be asked.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        store
            .get(b"known", 0)
            .await
            .expect("cached read")
            .map(|s| s.value),
        Some(b"yes".to_vec())
    );
    let write = store.put(b"new", b"no", &WriteOptions::default()).await;
    assert!(
        matches!(&write, Err(KvError::Unavailable(text)) if text.contains("unreachable")),
        "{write:?}"
    );
    assert!(matches!(
        store.get(b"never-read", 0).await,
        Err(KvError::Unavailable(_))
    ));

    cluster.restart_all().await;
    let mut written = Err(KvError::Unavailable("not tried".into()));
    for _ in 0..500 {
        written = store.put(b"new", b"yes", &WriteOptions::default()).await;
        if written.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    written.expect("writes go on once the hub is back");
    assert_eq!(
        store.get(b"new", 0).await.expect("get").map(|s| s.value),
        Some(b"yes".to_vec())
    );
}

/// Why global KV never sends an unacknowledged write again: the hub checks a repeated
/// conditional publish's condition before its `Nats-Msg-Id`, so the repeat of a write
/// that landed conflicts (an increment retried that way could count twice). A lost ack
/// is resolved by reading the key's last message instead.
#[tokio::test]
async fn a_repeated_conditional_write_conflicts_even_with_the_same_id() {
    let cluster = NatsCluster::start(1).await;
    let client = async_nats::connect(cluster.urls()[0].as_str())
        .await
        .expect("connect");
    let jetstream = async_nats::jetstream::new(client);
    jetstream
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "dedupe".into(),
            ..Default::default()
        })
        .await
        .expect("bucket");
    let publish = |id: &'static str| {
        let jetstream = jetstream.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id);
            headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
            jetstream
                .publish_with_headers("$KV.dedupe.k", headers, "1".into())
                .await
                .expect("send")
                .await
        }
    };
    publish("write-1").await.expect("first write");
    let again = publish("write-1").await;
    assert!(
        matches!(&again, Err(e) if matches!(e.kind(), async_nats::jetstream::context::PublishErrorKind::WrongLastSequence)),
        "{again:?}"
    );
}
