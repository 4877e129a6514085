//! The host side of `outpost:edge`: KV, SQL and blob calls with any keys, values,
//! options, cursors, statements and parameters, on real stores (sled, SQLite files, a
//! file bucket) in a temporary directory, as a guest would make them.

use std::path::Path;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use outpost_bindings::blob::BlobCtxView;
use outpost_bindings::generated::outpost::edge::{blob, kv, sql};
use outpost_bindings::kv::KvCtxView;
use outpost_bindings::sql::SqlCtxView;
use outpost_bindings::{NodeStores, TenantBindings};
use outpost_config::Config;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::Pollable;

struct Fixture {
    /// One input at a time: the checks read back what the input wrote, and the test
    /// suite runs inputs from several threads on these same stores.
    one_at_a_time: std::sync::Mutex<()>,
    runtime: tokio::runtime::Runtime,
    bindings: TenantBindings,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = format!(
            "[node]\ndata_dir = {:?}\n\n[[tenant]]\nname = \"fuzz\"\ncomponent = \"unused.wasm\"\nroutes = [\"/\"]\nkv = [\"KV\"]\nsql = [\"DB\"]\nblob = {{ FILES = {{}} }}\n",
            dir.path().join("data")
        );
        let config = Config::parse(&text, Path::new("fuzz.toml"))
            .unwrap_or_else(|e| panic!("fixture config: {e}"));
        let stores = NodeStores::new(&config.node.data_dir, config.node.cache_memory);
        let bindings = stores
            .tenant(&config.tenants[0])
            .unwrap_or_else(|e| panic!("fixture stores: {e}"));
        Fixture {
            one_at_a_time: std::sync::Mutex::new(()),
            runtime: tokio::runtime::Runtime::new().expect("tokio"),
            bindings,
            _dir: dir,
        }
    })
}

#[derive(Arbitrary, Debug)]
enum Op {
    KvPut {
        key: String,
        value: Vec<u8>,
        ttl: Option<u64>,
        at: Option<u64>,
        metadata: Option<Vec<u8>>,
    },
    KvGet {
        key: String,
    },
    KvDelete {
        key: String,
    },
    KvList {
        prefix: Option<String>,
        cursor: Option<String>,
        limit: Option<u32>,
    },
    KvIncrement {
        key: String,
        delta: i64,
        ttl: Option<u64>,
    },
    KvSwap {
        key: String,
        version: Option<u64>,
        value: Vec<u8>,
    },
    SqlQuery {
        sql: Sql,
        params: Vec<Param>,
    },
    SqlExecute {
        sql: Sql,
        params: Vec<Param>,
    },
    SqlBatch {
        statements: Vec<(Sql, Vec<Param>)>,
    },
    BlobPut {
        key: String,
        content_type: Option<String>,
        metadata: Vec<(String, String)>,
        chunks: Vec<Vec<u8>>,
        /// Finish the upload (else drop it: nothing may become visible).
        finish: bool,
    },
    BlobHead {
        key: String,
    },
    BlobGet {
        key: String,
        range: Option<Range>,
    },
    BlobDelete {
        key: String,
    },
    BlobList {
        prefix: Option<String>,
        delimiter: Option<String>,
        cursor: Option<String>,
        limit: Option<u32>,
    },
}

/// A statement: one that does something with this database, or any text.
#[derive(Arbitrary, Debug)]
enum Sql {
    Known(u8),
    Text(String),
}

const STATEMENTS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BLOB)",
    "INSERT OR REPLACE INTO t (k, v) VALUES (?1, ?2)",
    "SELECT k, v FROM t WHERE k >= ?1 ORDER BY k LIMIT 10",
    "SELECT ?1, ?2, ?3, typeof(?1)",
    "DELETE FROM t WHERE k = ?1",
    "UPDATE t SET v = ?2 WHERE k = ?1 RETURNING k",
    "ATTACH DATABASE ?1 AS other",
    "PRAGMA journal_mode = OFF",
    "SELECT load_extension(?1)",
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n",
];

#[derive(Arbitrary, Debug)]
enum Param {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Range {
    Offset(u64),
    Bounded(u64, u64),
    Suffix(u64),
}

impl Sql {
    fn text(&self) -> String {
        match self {
            Sql::Known(i) => STATEMENTS[*i as usize % STATEMENTS.len()].to_string(),
            Sql::Text(text) => text.clone(),
        }
    }
}

fn values(params: &[Param]) -> Vec<sql::Value> {
    params
        .iter()
        .take(32)
        .map(|p| match p {
            Param::Null => sql::Value::Null,
            Param::Integer(i) => sql::Value::Integer(*i),
            Param::Real(r) => sql::Value::Real(*r),
            Param::Text(t) => sql::Value::Text(t.clone()),
            Param::Blob(b) => sql::Value::Blob(b.clone()),
        })
        .collect()
}

/// A guest's statements stop at its request's deadline; so do the fuzzer's (a recursive
/// CTE runs for ever otherwise).
fn deadline() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_millis(100)
}

fn kv_view<'a>(bindings: &'a TenantBindings, table: &'a mut ResourceTable) -> KvCtxView<'a> {
    KvCtxView {
        ctx: &bindings.kv,
        table,
    }
}

fn sql_view<'a>(bindings: &'a TenantBindings, table: &'a mut ResourceTable) -> SqlCtxView<'a> {
    SqlCtxView {
        ctx: &bindings.sql,
        table,
        deadline: Some(deadline()),
    }
}

/// Writes `chunks` (64 at most, 64 KiB each) to the upload's body as a guest would,
/// waiting for room, and drops the stream; answers the bytes written, or `None` if the
/// stream refused one.
async fn write_upload(
    bindings: &TenantBindings,
    table: &mut ResourceTable,
    upload: &Resource<blob::Upload>,
    chunks: Vec<Vec<u8>>,
) -> Option<u64> {
    let mut view = blob_view(bindings, table);
    let body = blob::HostUpload::body(&mut view, borrow(upload))
        .await
        .ok()?;
    let mut written = Some(0);
    for chunk in chunks.into_iter().take(64) {
        let chunk = &chunk[..chunk.len().min(64 * 1024)];
        let Ok(stream) = table.get_mut(&body) else {
            break;
        };
        stream.ready().await;
        let wrote = stream
            .check_write()
            .and_then(|_| stream.write(bytes::Bytes::copy_from_slice(chunk)));
        written = match (written, wrote) {
            (Some(total), Ok(())) => Some(total + chunk.len() as u64),
            _ => None,
        };
        if written.is_none() {
            break;
        }
    }
    let _ = table.delete(body);
    written
}

fn blob_view<'a>(bindings: &'a TenantBindings, table: &'a mut ResourceTable) -> BlobCtxView<'a> {
    BlobCtxView {
        ctx: &bindings.blob,
        table,
    }
}

fn borrow<T: 'static>(handle: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(handle.rep())
}

pub fn run(data: &[u8]) {
    let Ok(ops) = Vec::<Op>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let fixture = fixture();
    let _turn = fixture
        .one_at_a_time
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    fixture.runtime.block_on(async {
        let bindings = &fixture.bindings;
        let mut table = ResourceTable::new();
        let store = kv::HostStore::open(&mut kv_view(bindings, &mut table), "KV".into())
            .await
            .expect("open KV");
        let database = sql::HostDatabase::open(&mut sql_view(bindings, &mut table), "DB".into())
            .await
            .expect("open DB");
        let bucket = blob::HostBucket::open(&mut blob_view(bindings, &mut table), "FILES".into())
            .await
            .expect("open FILES");
        for op in ops.into_iter().take(64) {
            let mut kv_view = kv_view(bindings, &mut table);
            match op {
                Op::KvPut {
                    key,
                    value,
                    ttl,
                    at,
                    metadata,
                } => {
                    let options = kv::PutOptions {
                        expiration_ttl: ttl,
                        expiration: at,
                        metadata,
                    };
                    let plain = ttl.is_none() && at.is_none();
                    let put = kv::HostStore::put(
                        &mut kv_view,
                        borrow(&store),
                        key.clone(),
                        value.clone(),
                        options,
                    )
                    .await;
                    if put.is_ok() && plain {
                        // An acknowledged write without expiry reads back at once.
                        let got =
                            kv::HostStore::get(&mut kv_view, borrow(&store), key.clone()).await;
                        let got = got.ok().flatten().map(|entry| entry.value);
                        assert_eq!(got.as_ref(), Some(&value), "put {key:?} then get");
                    }
                }
                Op::KvGet { key } => {
                    let _ = kv::HostStore::get(&mut kv_view, borrow(&store), key).await;
                }
                Op::KvDelete { key } => {
                    if kv::HostStore::delete(&mut kv_view, borrow(&store), key.clone())
                        .await
                        .is_ok()
                    {
                        let got =
                            kv::HostStore::get(&mut kv_view, borrow(&store), key.clone()).await;
                        assert!(matches!(got, Ok(None)), "delete {key:?} then get: {got:?}");
                    }
                }
                Op::KvList {
                    prefix,
                    cursor,
                    limit,
                } => {
                    let options = kv::ListOptions {
                        prefix: prefix.clone(),
                        cursor,
                        limit,
                    };
                    if let Ok(listed) =
                        kv::HostStore::list(&mut kv_view, borrow(&store), options).await
                    {
                        assert!(
                            listed.keys.len() <= 1000,
                            "{} keys in one page",
                            listed.keys.len()
                        );
                        let prefix = prefix.unwrap_or_default();
                        for key in &listed.keys {
                            assert!(
                                key.name.starts_with(&prefix),
                                "{:?} listed under {prefix:?}",
                                key.name
                            );
                        }
                    }
                }
                Op::KvIncrement { key, delta, ttl } => {
                    let _ = kv::HostStore::increment(&mut kv_view, borrow(&store), key, delta, ttl)
                        .await;
                }
                Op::KvSwap {
                    key,
                    version,
                    value,
                } => {
                    let options = kv::PutOptions {
                        expiration_ttl: None,
                        expiration: None,
                        metadata: None,
                    };
                    let _ = kv::HostStore::compare_and_swap(
                        &mut kv_view,
                        borrow(&store),
                        key,
                        version,
                        value,
                        options,
                    )
                    .await;
                }
                Op::SqlQuery {
                    sql: statement,
                    params,
                } => {
                    let mut view = sql_view(bindings, &mut table);
                    let _ = sql::HostDatabase::query(
                        &mut view,
                        borrow(&database),
                        statement.text(),
                        values(&params),
                    )
                    .await;
                }
                Op::SqlExecute {
                    sql: statement,
                    params,
                } => {
                    let mut view = sql_view(bindings, &mut table);
                    let _ = sql::HostDatabase::execute(
                        &mut view,
                        borrow(&database),
                        statement.text(),
                        values(&params),
                    )
                    .await;
                }
                Op::SqlBatch { statements } => {
                    let statements = statements
                        .iter()
                        .take(16)
                        .map(|(s, p)| sql::Statement {
                            sql: s.text(),
                            params: values(p),
                        })
                        .collect();
                    let mut view = sql_view(bindings, &mut table);
                    let _ =
                        sql::HostDatabase::batch(&mut view, borrow(&database), statements).await;
                }
                Op::BlobPut {
                    key,
                    content_type,
                    metadata,
                    chunks,
                    finish,
                } => {
                    let mut view = blob_view(bindings, &mut table);
                    let before = blob::HostBucket::head(&mut view, borrow(&bucket), key.clone())
                        .await
                        .ok()
                        .flatten()
                        .map(|info| info.size);
                    let options = blob::PutOptions {
                        content_type,
                        metadata,
                    };
                    let put =
                        blob::HostBucket::put(&mut view, borrow(&bucket), key.clone(), options)
                            .await;
                    if let Ok(upload) = put {
                        let written = write_upload(bindings, &mut table, &upload, chunks).await;
                        let mut view = blob_view(bindings, &mut table);
                        let after = if finish {
                            let info = blob::HostUpload::finish(&mut view, upload).await;
                            info.ok().map(|info| info.size)
                        } else {
                            let _ = blob::HostUpload::drop(&mut view, upload).await;
                            None
                        };
                        let head = blob::HostBucket::head(&mut view, borrow(&bucket), key.clone())
                            .await
                            .ok()
                            .flatten()
                            .map(|info| info.size);
                        match after {
                            // A stored object is whole, and is what `head` sees.
                            Some(size) => {
                                assert_eq!(Some(size), written, "put {key:?}: stored size");
                                assert_eq!(head, Some(size), "put {key:?} then head");
                            }
                            // Dropped or failed: the old object, untouched, or none.
                            None => assert_eq!(head, before, "an unfinished put of {key:?}"),
                        }
                    }
                }
                Op::BlobHead { key } => {
                    let mut view = blob_view(bindings, &mut table);
                    let _ = blob::HostBucket::head(&mut view, borrow(&bucket), key).await;
                }
                Op::BlobGet { key, range } => {
                    let range = range.map(|r| match r {
                        Range::Offset(o) => blob::ByteRange::Offset(o),
                        Range::Bounded(o, l) => blob::ByteRange::Bounded((o, l)),
                        Range::Suffix(l) => blob::ByteRange::Suffix(l),
                    });
                    let mut view = blob_view(bindings, &mut table);
                    if let Ok(Some(object)) =
                        blob::HostBucket::get(&mut view, borrow(&bucket), key, range).await
                    {
                        let _ = table.delete(object.body);
                    }
                }
                Op::BlobDelete { key } => {
                    let mut view = blob_view(bindings, &mut table);
                    let _ = blob::HostBucket::delete(&mut view, borrow(&bucket), key).await;
                }
                Op::BlobList {
                    prefix,
                    delimiter,
                    cursor,
                    limit,
                } => {
                    let options = blob::ListOptions {
                        prefix: prefix.clone(),
                        delimiter,
                        cursor,
                        limit,
                    };
                    let mut view = blob_view(bindings, &mut table);
                    if let Ok(listed) =
                        blob::HostBucket::list(&mut view, borrow(&bucket), options).await
                    {
                        let prefix = prefix.unwrap_or_default();
                        for object in &listed.objects {
                            assert!(
                                object.key.starts_with(&prefix),
                                "{:?} listed under {prefix:?}",
                                object.key
                            );
                        }
                    }
                }
            }
        }
        let _ = kv::HostStore::drop(&mut kv_view(bindings, &mut table), store).await;
        let _ = sql::HostDatabase::drop(&mut sql_view(bindings, &mut table), database).await;
        let _ = blob::HostBucket::drop(&mut blob_view(bindings, &mut table), bucket).await;
    });
}
