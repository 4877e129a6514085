//! An object's storage: one SQLite database, holding the guest's own tables and the KV
//! map (`_outpost_kv`), so a KV write and a SQL write can share one transaction.
//!
//! Each call outside a transaction is one statement, so it is atomic on its own, and it
//! commits with `synchronous = FULL` before returning: the response that follows a write
//! cannot leave before the write is on disk (Workers' output gate, without the wait).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::meters::StoreMeters;
use crate::sql::{SqlDatabase, SqlError, StatementLimits, StatementResult, TransactionStep, Value};
use crate::{EdgeError, EdgeResult};

/// Keys of one get, put or delete (Workers' 128).
pub const MAX_KEYS_PER_CALL: usize = 128;
/// Bytes of one key (Workers' 2,048).
pub const MAX_KEY_BYTES: usize = 2048;
/// Bytes of one value (Workers' 128 KiB).
pub const MAX_VALUE_BYTES: usize = 128 << 10;

const CREATE_KV: &str = "CREATE TABLE IF NOT EXISTS _outpost_kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID";

/// Which keys a list returns.
#[derive(Debug, Clone, Default)]
pub struct ListRange {
    /// At or after.
    pub start: Option<String>,
    /// After.
    pub start_after: Option<String>,
    /// Before.
    pub end: Option<String>,
    /// Starting with.
    pub prefix: Option<String>,
    /// Descending.
    pub reverse: bool,
    /// At most this many.
    pub limit: Option<u32>,
}

/// The storage of the object an instance runs as.
pub struct ObjectStorage {
    database: Arc<dyn SqlDatabase>,
    max_result_bytes: u64,
    meters: StoreMeters,
    tenant: Arc<str>,
    /// Whether `_outpost_kv` is known to exist.
    kv_ready: AtomicBool,
}

impl ObjectStorage {
    pub(crate) fn new(
        database: Arc<dyn SqlDatabase>,
        max_result_bytes: u64,
        meters: StoreMeters,
        tenant: Arc<str>,
    ) -> ObjectStorage {
        ObjectStorage {
            database,
            max_result_bytes,
            meters,
            tenant,
            kv_ready: AtomicBool::new(false),
        }
    }

    fn limits(&self, deadline: Option<Instant>) -> StatementLimits {
        StatementLimits {
            deadline,
            max_result_bytes: self.max_result_bytes,
        }
    }

    async fn run(
        &self,
        op: &'static str,
        sql: String,
        params: Vec<Value>,
        deadline: Option<Instant>,
    ) -> Result<StatementResult, SqlError> {
        let _timer = self.meters.time(&self.tenant, "object", op);
        self.database.run(sql, params, self.limits(deadline)).await
    }

    async fn kv_table(&self, deadline: Option<Instant>) -> Result<(), SqlError> {
        if !self.kv_ready.load(Ordering::Relaxed) {
            self.database
                .run(CREATE_KV.into(), Vec::new(), self.limits(deadline))
                .await?;
            self.kv_ready.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The values of those of `keys` that exist, in key order.
    pub async fn get(
        &self,
        keys: Vec<String>,
        deadline: Option<Instant>,
    ) -> EdgeResult<Vec<(String, Vec<u8>)>> {
        let result = self
            .on_keys(
                "get",
                "SELECT key, value FROM _outpost_kv WHERE key IN (#) ORDER BY key",
                keys,
                deadline,
            )
            .await?;
        Ok(result.map(pairs).unwrap_or_default())
    }

    /// Writes `entries` in one statement.
    pub async fn put(
        &self,
        entries: Vec<(String, Vec<u8>)>,
        deadline: Option<Instant>,
    ) -> EdgeResult<()> {
        if entries.len() > MAX_KEYS_PER_CALL {
            return Err(too_many(entries.len()));
        }
        for (key, value) in &entries {
            check_key(key)?;
            if value.len() > MAX_VALUE_BYTES {
                return Err(EdgeError::limit(
                    "durable_object.value_bytes",
                    format!(
                        "the value of `{}` is {} bytes; the most is {MAX_VALUE_BYTES}",
                        shorten(key),
                        value.len()
                    ),
                ));
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        // A key twice in one put: the last value wins, as in a map.
        let mut entries = entries;
        entries.reverse();
        let mut seen = std::collections::HashSet::new();
        entries.retain(|(key, _)| seen.insert(key.clone()));
        self.kv_table(deadline).await?;
        let sql = format!(
            "INSERT INTO _outpost_kv (key, value) VALUES {} \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (0..entries.len())
                .map(|i| format!("(?{}, ?{})", 2 * i + 1, 2 * i + 2))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let params = entries
            .into_iter()
            .flat_map(|(key, value)| [Value::Text(key), Value::Blob(value)])
            .collect();
        self.run("put", sql, params, deadline).await?;
        Ok(())
    }

    /// Deletes `keys`; how many existed.
    pub async fn delete(&self, keys: Vec<String>, deadline: Option<Instant>) -> EdgeResult<u32> {
        let result = self
            .on_keys(
                "delete",
                "DELETE FROM _outpost_kv WHERE key IN (#)",
                keys,
                deadline,
            )
            .await?;
        Ok(result.map_or(0, |result| result.changes as u32))
    }

    /// Runs `sql` with its `#` replaced by one parameter per key; none for no keys.
    async fn on_keys(
        &self,
        op: &'static str,
        sql: &str,
        keys: Vec<String>,
        deadline: Option<Instant>,
    ) -> EdgeResult<Option<StatementResult>> {
        check_keys(&keys)?;
        if keys.is_empty() {
            return Ok(None);
        }
        self.kv_table(deadline).await?;
        let sql = sql.replace('#', &placeholders(keys.len(), 1));
        let params = keys.into_iter().map(Value::Text).collect();
        Ok(Some(self.run(op, sql, params, deadline).await?))
    }

    /// The entries in `range`, in key order (or reversed).
    pub async fn list(
        &self,
        range: ListRange,
        deadline: Option<Instant>,
    ) -> EdgeResult<Vec<(String, Vec<u8>)>> {
        self.kv_table(deadline).await?;
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        let mut bound = |condition: &str, value: String| {
            params.push(Value::Text(value));
            conditions.push(condition.replace('#', &format!("?{}", params.len())));
        };
        if let Some(start) = range.start {
            bound("key >= #", start);
        }
        if let Some(after) = range.start_after {
            bound("key > #", after);
        }
        if let Some(end) = range.end {
            bound("key < #", end);
        }
        if let Some(prefix) = range.prefix {
            // `substr` and `length` count characters alike; the first bound uses the index.
            bound("key >= # AND substr(key, 1, length(#)) = #", prefix);
        }
        let mut sql = String::from("SELECT key, value FROM _outpost_kv");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(if range.reverse {
            " ORDER BY key DESC"
        } else {
            " ORDER BY key"
        });
        if let Some(limit) = range.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let result = self.run("list", sql, params, deadline).await?;
        Ok(pairs(result))
    }

    /// Deletes every key, table, view and trigger.
    pub async fn delete_all(&self, deadline: Option<Instant>) -> EdgeResult<()> {
        let schema = self
            .run(
                "delete_all",
                "SELECT type, name FROM sqlite_schema \
                 WHERE type IN ('table', 'view', 'trigger') AND name NOT LIKE 'sqlite_%'"
                    .into(),
                Vec::new(),
                deadline,
            )
            .await?;
        for row in schema.rows {
            let (Some(Value::Text(kind)), Some(Value::Text(name))) = (row.first(), row.get(1))
            else {
                continue;
            };
            let kind = kind.to_uppercase();
            let name = name.replace('"', "\"\"");
            self.run(
                "delete_all",
                format!("DROP {kind} IF EXISTS \"{name}\""),
                Vec::new(),
                deadline,
            )
            .await?;
        }
        self.kv_ready.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Runs one statement of the guest's.
    pub async fn exec(
        &self,
        sql: String,
        params: Vec<Value>,
        deadline: Option<Instant>,
    ) -> EdgeResult<StatementResult> {
        Ok(self.run("sql", sql, params, deadline).await?)
    }

    /// Takes a step of the guest's transaction.
    pub async fn transaction(&self, step: TransactionStep) -> EdgeResult<()> {
        let _timer = self.meters.time(&self.tenant, "object", "transaction");
        self.database.transaction(step).await?;
        if step != TransactionStep::Begin {
            // A rolled-back `CREATE TABLE _outpost_kv` is gone again.
            self.kv_ready.store(false, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Ends an event (and an instance, before it is dropped): a transaction the guest
    /// left open, through the transaction calls or its own `BEGIN`, is rolled back.
    /// Always asked of the database, which alone knows whether one is open.
    pub async fn end_event(&self) {
        if let Err(error) = self.database.transaction(TransactionStep::Abandon).await {
            tracing::warn!(tenant = %self.tenant, %error, "rolling back an object's open transaction failed");
        }
        // A rolled-back `CREATE TABLE _outpost_kv` is gone again.
        self.kv_ready.store(false, Ordering::Relaxed);
    }
}

fn placeholders(count: usize, first: usize) -> String {
    (first..first + count)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pairs(result: StatementResult) -> Vec<(String, Vec<u8>)> {
    result
        .rows
        .into_iter()
        .filter_map(|row| {
            let mut row = row.into_iter();
            match (row.next(), row.next()) {
                (Some(Value::Text(key)), Some(Value::Blob(value))) => Some((key, value)),
                _ => None,
            }
        })
        .collect()
}

fn shorten(key: &str) -> String {
    key.chars().take(64).collect()
}

fn too_many(count: usize) -> EdgeError {
    EdgeError::limit(
        "durable_object.keys_per_call",
        format!("{count} keys in one call; the most is {MAX_KEYS_PER_CALL}"),
    )
}

fn check_key(key: &str) -> EdgeResult<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(EdgeError::limit(
            "durable_object.key_bytes",
            format!(
                "a key of {} bytes (`{}…`); the most is {MAX_KEY_BYTES}",
                key.len(),
                shorten(key)
            ),
        ));
    }
    Ok(())
}

fn check_keys(keys: &[String]) -> EdgeResult<()> {
    if keys.len() > MAX_KEYS_PER_CALL {
        return Err(too_many(keys.len()));
    }
    keys.iter().try_for_each(|key| check_key(key))
}
