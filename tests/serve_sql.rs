//! SQL through the real binary: `examples/sql-todo` (CRUD, 400/404, batch rollback) and the
//! `limits` example's raw `/sql` route (types, authorizer, size cap, query deadline).

mod support;

use http::Method;
use serde_json::json;
use support::{Node, Reply, strings, tenant};

const TODO: &str = "todo.test";
const RAW: &str = "raw.test";

#[tokio::test]
async fn todo_api_creates_reads_updates_and_deletes() {
    let node = Node::start(&tenant("todo", "sql-todo", &[TODO], "sql = [\"DB\"]")).await;
    // First use creates the table.
    let empty = node.get(TODO, "/todos").await;
    assert_eq!((empty.status, empty.body.as_str()), (200, "[]"));

    let created = node
        .call(Method::POST, TODO, "/todos", r#"{"title":"write tests"}"#)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let todo = created.json();
    assert_eq!(todo["title"], "write tests");
    assert_eq!(todo["done"], false);
    let id = todo["id"].as_i64().expect("an id");
    node.call(
        Method::POST,
        TODO,
        "/todos",
        r#"{"title":"ship","done":true}"#,
    )
    .await;

    let got = node.get(TODO, &format!("/todos/{id}")).await.json();
    assert_eq!(got, todo);

    let patched = node
        .call(
            Method::PATCH,
            TODO,
            &format!("/todos/{id}"),
            r#"{"done":true}"#,
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["done"], true);
    assert_eq!(patched.json()["title"], "write tests");

    let all = node.get(TODO, "/todos").await.json();
    let titles = strings(&all, "title");
    assert_eq!(titles, ["write tests", "ship"]);

    let deleted = node
        .call(Method::DELETE, TODO, &format!("/todos/{id}"), "")
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(node.get(TODO, &format!("/todos/{id}")).await.status, 404);
    assert_eq!(
        node.call(Method::DELETE, TODO, &format!("/todos/{id}"), "")
            .await
            .status,
        404
    );
    let patch_gone = node
        .call(
            Method::PATCH,
            TODO,
            &format!("/todos/{id}"),
            r#"{"done":false}"#,
        )
        .await;
    assert_eq!(patch_gone.status, 404);
}

#[tokio::test]
async fn todo_api_answers_bad_input_with_400() {
    let node = Node::start(&tenant("todo", "sql-todo", &[TODO], "sql = [\"DB\"]")).await;
    for (method, path, body) in [
        (Method::POST, "/todos", "not json"),
        (Method::POST, "/todos", r#"{"title":""}"#),
        (Method::POST, "/todos", r#"{"done":true}"#),
        (Method::GET, "/todos/abc", ""),
        (Method::PATCH, "/todos/1", r#"{"colour":"red"}"#),
    ] {
        let reply = node.call(method.clone(), TODO, path, body).await;
        assert_eq!(reply.status, 400, "{method} {path} {body}: {}", reply.body);
    }
    assert_eq!(node.get(TODO, "/todos").await.body, "[]");
}

#[tokio::test]
async fn a_failing_statement_rolls_back_the_whole_batch() {
    let node = Node::start(&tenant("todo", "sql-todo", &[TODO], "sql = [\"DB\"]")).await;
    let ok = node
        .call(Method::POST, TODO, "/todos/bulk", r#"["a","b","c"]"#)
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.json()["inserted"], json!([1, 2, 3]));

    // The third title is NULL: NOT NULL fails after two inserts ran inside the batch.
    let failed = node
        .call(Method::POST, TODO, "/todos/bulk", r#"["d","e",null,"f"]"#)
        .await;
    assert_eq!(failed.status, 400, "{}", failed.body);
    assert!(
        failed
            .body
            .contains("NOT NULL constraint failed: todos.title"),
        "SQLite's own message reaches the guest: {}",
        failed.body
    );
    let titles = strings(&node.get(TODO, "/todos").await.json(), "title");
    assert_eq!(
        titles,
        ["a", "b", "c"],
        "nothing of the failed batch remains"
    );
}

fn raw_tenant(extra_limits: &str) -> String {
    tenant(
        "raw",
        "limits",
        &[RAW],
        &format!("sql = [\"DB\"]\nlimits = {{ timeout = \"3s\"{extra_limits} }}"),
    )
}

async fn sql(node: &Node, statement: &str) -> Reply {
    node.call(Method::POST, RAW, "/sql", statement).await
}

#[tokio::test]
async fn values_keep_their_types() {
    let node = Node::start(&raw_tenant("")).await;
    let reply = sql(
        &node,
        "SELECT NULL AS n, 42 AS i, -1.5 AS r, 'text' AS t, x'00ff10' AS b, 9223372036854775807 AS big",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!([{ "n": null, "i": 42, "r": -1.5, "t": "text", "b": [0, 255, 16], "big": i64::MAX }])
    );
}

#[tokio::test]
async fn escapes_from_the_database_are_refused() {
    let node = Node::start(&raw_tenant("")).await;
    for (statement, expected) in [
        (
            "ATTACH DATABASE '/tmp/outpost-escape.db' AS other",
            "not authorized",
        ),
        ("SELECT load_extension('/tmp/x.so')", "not authorized"),
        ("PRAGMA journal_mode = DELETE", "not authorized"),
        ("BEGIN", "not authorized"),
    ] {
        let reply = sql(&node, statement).await;
        assert_eq!(reply.status, 400, "{statement}: {}", reply.body);
        assert!(reply.body.contains(expected), "{statement}: {}", reply.body);
    }
    assert!(!std::path::Path::new("/tmp/outpost-escape.db").exists());
    // Harmless pragmas still work.
    let reply = sql(&node, "PRAGMA table_info('sqlite_master')").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn the_size_cap_stops_growth_and_keeps_the_database() {
    let node = Node::start(&raw_tenant(", sql_size = \"1MiB\"")).await;
    assert_eq!(sql(&node, "CREATE TABLE t (b BLOB)").await.status, 200);
    let small = sql(
        &node,
        "INSERT INTO t VALUES (randomblob(100000)) RETURNING length(b) AS n",
    )
    .await;
    assert_eq!(small.status, 200, "{}", small.body);
    let big = sql(
        &node,
        "INSERT INTO t WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT 30) \
         SELECT randomblob(100000) FROM c",
    )
    .await;
    assert_eq!(big.status, 400, "{}", big.body);
    assert!(
        big.body.contains("reached the tenant's sql_size limit"),
        "{}",
        big.body
    );
    let count = sql(&node, "SELECT count(*) AS n FROM t").await;
    assert_eq!(count.json(), json!([{ "n": 1 }]));
}

#[tokio::test]
async fn a_query_past_the_deadline_is_ended_and_the_database_stays_usable() {
    let node = Node::start(&raw_tenant("")).await;
    let forever = sql(
        &node,
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT count(*) FROM c",
    )
    .await;
    // The guest may see "interrupted" just before the node's own timeout answers 504.
    assert!(
        forever.status == 504 || (forever.status == 400 && forever.body.contains("interrupted")),
        "{} {}",
        forever.status,
        forever.body
    );
    // The database's connection was handed back: the next statement runs.
    let after = sql(&node, "SELECT 1 AS one").await;
    assert_eq!((after.status, after.json()), (200, json!([{ "one": 1 }])));
}
