//! What holds across stores: tenants' data is kept apart, undeclared bindings are refused,
//! and whatever was acknowledged survives `kill -9`.

mod support;

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use support::{Node, strings, tenant, write_config};

fn storage_tenants() -> String {
    [
        tenant("alpha", "kv-counter", &["alpha.test"], "kv = [\"COUNTS\"]"),
        tenant("beta", "kv-counter", &["beta.test"], "kv = [\"COUNTS\"]"),
        tenant("todo-a", "sql-todo", &["todo-a.test"], "sql = [\"DB\"]"),
        tenant("todo-b", "sql-todo", &["todo-b.test"], "sql = [\"DB\"]"),
        tenant(
            "files-a",
            "blob-files",
            &["files-a.test"],
            "blob = { FILES = {} }",
        ),
        tenant(
            "files-b",
            "blob-files",
            &["files-b.test"],
            "blob = { FILES = {} }",
        ),
    ]
    .concat()
}

#[tokio::test]
async fn tenants_with_the_same_binding_name_see_different_data() {
    let node = Node::start(&storage_tenants()).await;
    for _ in 0..3 {
        node.get("alpha.test", "/").await;
    }
    assert_eq!(node.get("beta.test", "/").await.body, "1");
    assert_eq!(node.get("alpha.test", "/").await.body, "4");
    node.get("alpha.test", "/ttl?key=secret&value=alpha-only&ttl=600")
        .await;
    assert_eq!(node.get("beta.test", "/get?key=secret").await.status, 404);
    let listed: Value =
        serde_json::from_str(&node.get("beta.test", "/list").await.body).expect("json");
    let names = strings(&listed["keys"], "name");
    assert_eq!(names, ["counter"], "beta lists only its own keys");

    let created = node
        .send(
            Method::POST,
            "todo-a.test",
            "/todos",
            &[],
            Bytes::from_static(br#"{"title":"a's"}"#),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(node.get("todo-b.test", "/todos").await.body, "[]");

    let put = node
        .send(
            Method::PUT,
            "files-a.test",
            "/files/note",
            &[],
            Bytes::from_static(b"a's note"),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    assert_eq!(node.get("files-b.test", "/files/note").await.status, 404);
    assert_eq!(
        node.get("files-a.test", "/files/note").await.body,
        "a's note"
    );
}

#[tokio::test]
async fn a_guest_cannot_open_a_binding_its_tenant_did_not_declare() {
    let node = Node::start(&storage_tenants()).await;
    // beta's COUNTS exists on this node, but alpha names other bindings.
    for (kind, name) in [("kv", "OTHER"), ("sql", "DB"), ("blob", "FILES")] {
        let reply = node
            .get("alpha.test", &format!("/open?kind={kind}&name={name}"))
            .await;
        assert_eq!(reply.status, 500, "{kind} {name}: {}", reply.body);
        assert!(
            reply
                .body
                .contains(&format!("`{name}` is not declared for tenant `alpha`")),
            "{kind} {name}: {}",
            reply.body
        );
    }
    let declared = node.get("alpha.test", "/open?kind=kv&name=COUNTS").await;
    assert_eq!((declared.status, declared.body.as_str()), (200, "opened"));
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    const N: usize = 200;
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, addr) = write_config(dir.path(), &storage_tenants());
    let node = Node::start_with(dir, &config, addr).await;

    // Concurrent writers, so that acknowledgements ride on shared (group) commits.
    let mut writes = tokio::task::JoinSet::new();
    let node = std::sync::Arc::new(node);
    for writer in 0..8 {
        let node = node.clone();
        writes.spawn(async move {
            for i in (writer..N).step_by(8) {
                let kv = node
                    .send(
                        Method::PUT,
                        "alpha.test",
                        &format!("/put?key=k{i:04}"),
                        &[],
                        Bytes::from(format!("value {i}")),
                    )
                    .await;
                assert_eq!(kv.status, 200, "{}", kv.body);
                let sql = node
                    .send(
                        Method::POST,
                        "todo-a.test",
                        "/todos",
                        &[],
                        Bytes::from(format!(r#"{{"title":"todo {i}"}}"#)),
                    )
                    .await;
                assert_eq!(sql.status, 201, "{}", sql.body);
            }
        });
    }
    while let Some(done) = writes.join_next().await {
        done.expect("writer");
    }
    let node = std::sync::Arc::into_inner(node).expect("writers are done");
    // SIGKILL: no shutdown hook runs, nothing gets flushed on the way out.
    let dir = node.stop();

    let node = Node::start_with(dir, &config, addr).await;
    for i in 0..N {
        let reply = node.get("alpha.test", &format!("/get?key=k{i:04}")).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, format!("value {i}").as_str()),
            "KV key k{i:04}"
        );
    }
    let todos: Value =
        serde_json::from_str(&node.get("todo-a.test", "/todos").await.body).expect("json");
    let mut titles = strings(&todos, "title");
    titles.sort();
    let mut expected: Vec<String> = (0..N).map(|i| format!("todo {i}")).collect();
    expected.sort();
    assert_eq!(titles, expected);

    // Both stores still take writes after the crash.
    let kv = node
        .send(
            Method::PUT,
            "alpha.test",
            "/put?key=after",
            &[],
            Bytes::from_static(b"x"),
        )
        .await;
    assert_eq!(kv.status, 200, "{}", kv.body);
    let sql = node
        .send(
            Method::POST,
            "todo-a.test",
            "/todos",
            &[],
            Bytes::from_static(br#"{"title":"after"}"#),
        )
        .await;
    assert_eq!(sql.status, 201, "{}", sql.body);
}

#[tokio::test]
async fn an_sql_batch_cut_by_sigkill_is_all_or_nothing() {
    const ROWS: usize = 300;
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, addr) = write_config(dir.path(), &storage_tenants());
    let node = std::sync::Arc::new(Node::start_with(dir, &config, addr).await);
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (enough, mut enough_seen) = tokio::sync::mpsc::channel::<()>(1);
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..4 {
        let (node, acknowledged, enough) = (node.clone(), acknowledged.clone(), enough.clone());
        writers.spawn(async move {
            for round in 0.. {
                let batch = format!("w{writer}r{round}");
                let titles: Vec<String> = (0..ROWS).map(|i| format!("{batch}-{i}")).collect();
                let body = serde_json::to_string(&titles).expect("json");
                let (status, _, _) = node
                    .send_bytes(
                        Method::POST,
                        "todo-a.test",
                        "/todos/bulk",
                        &[],
                        Bytes::from(body),
                    )
                    .await;
                assert_eq!(status, 201);
                let mut done = acknowledged.lock().expect("lock");
                done.push(batch);
                if done.len() >= 12 {
                    let _ = enough.try_send(());
                }
            }
        });
    }
    enough_seen.recv().await.expect("writers running");
    // SIGKILL with batches in flight; the writers' requests fail with the node (their
    // tasks end in a panic, which is expected here).
    let pid = node.pid();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    while let Some(ended) = writers.join_next().await {
        assert!(ended.is_err(), "a writer stopped before the node died");
    }
    let node = std::sync::Arc::into_inner(node).expect("writers are done");
    let dir = node.stop();
    let acknowledged = acknowledged.lock().expect("lock").clone();

    let node = Node::start_with(dir, &config, addr).await;
    let todos: Value =
        serde_json::from_str(&node.get("todo-a.test", "/todos").await.body).expect("json");
    let mut rows_per_batch = std::collections::BTreeMap::<String, usize>::new();
    for title in strings(&todos, "title") {
        let batch = title.split('-').next().expect("batch").to_string();
        *rows_per_batch.entry(batch).or_default() += 1;
    }
    for (batch, rows) in &rows_per_batch {
        assert_eq!(*rows, ROWS, "batch {batch} is torn: {rows} of {ROWS} rows");
    }
    for batch in &acknowledged {
        assert!(
            rows_per_batch.contains_key(batch),
            "acknowledged batch {batch} was lost"
        );
    }
}
