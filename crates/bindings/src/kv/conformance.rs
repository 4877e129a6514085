//! The behaviour every [`KvBackend`](super::KvBackend) must have, as test functions that
//! each backend's tests run against itself (`kv_store_tests!`), so sled, memory and the
//! fleet's global KV are held to the same contract. Other crates reach it through the
//! `conformance` feature.

use super::store::{KvBackend, KvError, Swap, WriteOptions};

/// Generates one `#[tokio::test]` per contract function for the backend `$make` returns
/// (a closure giving a future of `(guard, backend)`; the guard lives as long as the test).
#[macro_export]
macro_rules! kv_store_tests {
    ($make:expr) => {
        $crate::kv_store_tests!(@each $make;
            values_round_trip_with_metadata_and_versions,
            bindings_and_tenants_are_separate,
            expired_values_are_invisible,
            list_pages_in_key_order,
            list_skips_expired_keys_and_stops_at_the_prefix,
            increment_counts_and_keeps_the_first_expiry,
            increment_refuses_text_and_overflow,
            compare_and_swap_checks_the_version,
            delete_of_an_absent_key_is_fine,
        );
    };
    (@each $make:expr; $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (_guard, backend) = ($make)().await;
                $crate::kv::conformance::$name(&backend).await;
            }
        )*
    };
}
pub use kv_store_tests;

fn plain() -> WriteOptions {
    WriteOptions::default()
}

pub async fn values_round_trip_with_metadata_and_versions(backend: &dyn KvBackend) {
    let store = backend.open("t", "A").expect("open");
    let with_metadata = WriteOptions {
        metadata: Some(b"{\"a\":1}".to_vec()),
        expires_at_ms: None,
    };
    let v1 = store.put(b"k", b"one", &with_metadata).await.expect("put");
    let got = store.get(b"k", 0).await.expect("get").expect("present");
    assert_eq!(got.value, b"one");
    assert_eq!(got.metadata.as_deref(), Some(&b"{\"a\":1}"[..]));
    assert_eq!(got.version, v1);
    let v2 = store.put(b"k", b"two", &plain()).await.expect("put");
    assert!(v2 > v1, "versions increase: {v1} then {v2}");
    let got = store.get(b"k", 0).await.expect("get").expect("present");
    assert_eq!((got.value.as_slice(), got.metadata), (&b"two"[..], None));
    assert_eq!(store.get(b"absent", 0).await.expect("get"), None);
}

pub async fn bindings_and_tenants_are_separate(backend: &dyn KvBackend) {
    let a = backend.open("t", "A").expect("open");
    a.put(b"k", b"v", &plain()).await.expect("put");
    for (tenant, binding) in [("t", "B"), ("u", "A")] {
        let other = backend.open(tenant, binding).expect("open");
        assert_eq!(
            other.get(b"k", 0).await.expect("get"),
            None,
            "{tenant}/{binding} must not see t/A's key"
        );
    }
    let again = backend.open("t", "A").expect("reopen");
    assert!(again.get(b"k", 0).await.expect("get").is_some());
}

pub async fn expired_values_are_invisible(backend: &dyn KvBackend) {
    let store = backend.open("t", "A").expect("open");
    let at = 10_000;
    let expiring = WriteOptions {
        metadata: None,
        expires_at_ms: Some(at),
    };
    store.put(b"gone", b"x", &expiring).await.expect("put");
    assert!(store.get(b"gone", at - 1).await.expect("get").is_some());
    assert!(store.get(b"gone", at).await.expect("get").is_none());
}

pub async fn list_pages_in_key_order(backend: &dyn KvBackend) {
    let store = backend.open("t", "A").expect("open");
    // Written out of order: the listing sorts.
    for i in (0..25).rev() {
        let key = format!("user:{i:02}");
        store
            .put(key.as_bytes(), b"v", &plain())
            .await
            .expect("put");
    }
    store.put(b"other", b"v", &plain()).await.expect("put");
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let (keys, complete) = store
            .list(b"user:", after.as_deref(), 10, 0)
            .await
            .expect("list");
        assert!(keys.len() <= 10);
        seen.extend(
            keys.iter()
                .map(|k| String::from_utf8_lossy(&k.key).into_owned()),
        );
        if complete {
            break;
        }
        after = keys.last().map(|k| k.key.clone());
    }
    let expected: Vec<String> = (0..25).map(|i| format!("user:{i:02}")).collect();
    assert_eq!(seen, expected);
}

pub async fn list_skips_expired_keys_and_stops_at_the_prefix(backend: &dyn KvBackend) {
    let store = backend.open("t", "A").expect("open");
    let expiring = WriteOptions {
        metadata: Some(b"m".to_vec()),
        expires_at_ms: Some(50),
    };
    store.put(b"a:1", b"v", &expiring).await.expect("put");
    store.put(b"a:2", b"v", &plain()).await.expect("put");
    store.put(b"b:1", b"v", &plain()).await.expect("put");
    let (keys, complete) = store.list(b"a:", None, 10, 0).await.expect("list");
    assert!(complete);
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].metadata.as_deref(), Some(&b"m"[..]));
    assert_eq!(keys[0].expires_at_ms, Some(50));
    let (keys, complete) = store.list(b"a:", None, 1, 100).await.expect("list");
    assert!(complete, "the only live key fits the page");
    assert_eq!(
        keys.iter().map(|k| k.key.as_slice()).collect::<Vec<_>>(),
        [b"a:2"]
    );
}

pub async fn increment_counts_and_keeps_the_first_expiry(backend: &dyn KvBackend) {
    let store = backend.open("t", "A").expect("open");
    assert_eq!(
        store
            .increment(b"n", 5, Some(1_000), 0)
            .await
            .expect("incr"),
        5
    );
    assert_eq!(
        store
            .increment(b"n", -2, Some(9_000), 10)
            .await
            .expect("incr"),
        3
    );
    let got = store.get(b"n", 10).await.expect("get").expect("present");
    assert_eq!(
        (got.value.as_slice(), got.expires_at_ms),
        (&b"3"[..], Some(1_000))
    );
    // After expiry the counter starts again.
    assert_eq!(
        store.increment(b"n", 1, None, 1_000).await.expect("incr"),
        1
    );
}

pub async fn increment_refuses_text_and_overflow(backend: &dyn KvBackend) {
    let store = backend.open("t", "A").expect("open");
    store.put(b"s", b"text", &plain()).await.expect("put");
    assert!(matches!(
        store.increment(b"s", 1, None, 0).await,
        Err(KvError::Invalid(_))
    ));
    store
        .put(b"max", i64::MAX.to_string().as_bytes(), &plain())
        .await
        .expect("put");
    assert!(matches!(
        store.increment(b"max", 1, None, 0).await,
        Err(KvError::Invalid(_))
    ));
}

pub async fn compare_and_swap_checks_the_version(backend: &dyn KvBackend) {
    let store = backend.open("t", "A").expect("open");
    let Swap::Swapped(v1) = store
        .compare_and_swap(b"k", None, b"a", &plain(), 0)
        .await
        .expect("cas")
    else {
        panic!("creating an absent key must swap");
    };
    assert_eq!(
        store
            .compare_and_swap(b"k", None, b"b", &plain(), 0)
            .await
            .expect("cas"),
        Swap::Conflict(Some(v1))
    );
    assert_eq!(
        store
            .compare_and_swap(b"k", Some(v1 + 1000), b"b", &plain(), 0)
            .await
            .expect("cas"),
        Swap::Conflict(Some(v1))
    );
    assert!(matches!(
        store
            .compare_and_swap(b"k", Some(v1), b"c", &plain(), 0)
            .await
            .expect("cas"),
        Swap::Swapped(_)
    ));
    let got = store.get(b"k", 0).await.expect("get").expect("present");
    assert_eq!(got.value, b"c");
}

pub async fn delete_of_an_absent_key_is_fine(backend: &dyn KvBackend) {
    let store = backend.open("t", "A").expect("open");
    store.delete(b"never").await.expect("delete absent");
    store.put(b"k", b"v", &plain()).await.expect("put");
    store.delete(b"k").await.expect("delete");
    assert_eq!(store.get(b"k", 0).await.expect("get"), None);
}
