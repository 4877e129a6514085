//! [`SqlBackend`] on SQLite: one file per tenant binding under the node's `sql/`
//! directory, WAL, `synchronous = FULL` (a commit is on disk when it returns), a size cap,
//! the authorizer in `authorizer.rs`, statements run by `statement.rs`, and a progress
//! handler that stops a statement at the request's deadline.
//!
//! Connections open on first use and close after [`IDLE_CLOSE`] without use (`reaper.rs`),
//! so a node with 1,000 tenants holds only the databases in use. SQLite calls block, so
//! each database runs its statements on a thread of its own (`worker.rs`), never on an
//! async worker.

mod reaper;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::hooks::AuthContext;
use rusqlite::limits::Limit;
use rusqlite::{Connection, OpenFlags};

use super::authorizer::authorize;
use super::database::{
    SqlBackend, SqlDatabase, SqlError, Statement, StatementLimits, StatementResult,
    TransactionStep, Value,
};
use super::statement::{Budget, run, run_batch, transaction_step};

/// A connection unused this long is closed.
pub const IDLE_CLOSE: Duration = Duration::from_secs(30);
/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite VM instructions between deadline checks.
const PROGRESS_OPS: i32 = 4_000;
/// Every SQLite database of the node, open or not.
pub struct SqliteDatabases {
    dir: PathBuf,
    idle_close: Duration,
    databases: Mutex<HashMap<String, Arc<SqliteDb>>>,
}

/// One tenant binding's database file.
struct SqliteDb {
    path: PathBuf,
    max_bytes: u64,
    connection: Mutex<Option<Connection>>,
    /// The queue of this database's own thread (`worker.rs`). `None` until first use;
    /// the thread ends when idle.
    worker: Mutex<Option<mpsc::Sender<worker::Job>>>,
    last_used: Mutex<Instant>,
    /// When the running statement must stop: nanoseconds after [`clock_base`], 0 = none.
    deadline: Arc<AtomicU64>,
    /// Set while the host itself prepares statements (BEGIN/COMMIT of a batch).
    host_statement: Arc<AtomicBool>,
}

fn clock_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn as_nanos(at: Instant) -> u64 {
    at.saturating_duration_since(clock_base()).as_nanos() as u64
}

impl SqliteDatabases {
    /// Databases live under `dir`; idle ones close after [`IDLE_CLOSE`].
    pub fn new(dir: PathBuf) -> Arc<SqliteDatabases> {
        SqliteDatabases::with_idle_close(dir, IDLE_CLOSE)
    }

    /// As [`SqliteDatabases::new`], closing connections after `idle_close` unused.
    pub fn with_idle_close(dir: PathBuf, idle_close: Duration) -> Arc<SqliteDatabases> {
        let databases = Arc::new(SqliteDatabases {
            dir,
            idle_close,
            databases: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&databases);
        let every = (idle_close / 4).max(Duration::from_millis(50));
        let spawned = std::thread::Builder::new()
            .name("outpost-sql-reaper".into())
            .spawn(move || reaper::reap_idle(&weak, every));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the SQL idle reaper; connections stay open");
        }
        databases
    }

    /// How many database connections are open now.
    pub fn open_count(&self) -> usize {
        self.lock()
            .values()
            .filter(|db| db.connection.lock().is_ok_and(|c| c.is_some()))
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SqliteDb>>> {
        self.databases.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn database(&self, tenant: &str, binding: &str, max_bytes: u64) -> Arc<SqliteDb> {
        let key = format!("{tenant}/{binding}");
        self.lock()
            .entry(key)
            .or_insert_with(|| {
                Arc::new(SqliteDb {
                    path: self.dir.join(tenant).join(format!("{binding}.sqlite")),
                    max_bytes,
                    connection: Mutex::new(None),
                    worker: Mutex::new(None),
                    last_used: Mutex::new(Instant::now()),
                    deadline: Arc::new(AtomicU64::new(0)),
                    host_statement: Arc::new(AtomicBool::new(false)),
                })
            })
            .clone()
    }
}

impl SqliteDb {
    fn open(&self) -> Result<Connection, SqlError> {
        let unavailable = |what: String| SqlError::Unavailable(what);
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| unavailable(format!("cannot create {}: {e}", parent.display())))?;
        }
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| unavailable(format!("cannot open {}: {e}", self.path.display())))?;
        self.configure(connection)
            .map_err(|e| unavailable(format!("cannot configure {}: {e}", self.path.display())))
    }

    fn configure(&self, mut connection: Connection) -> rusqlite::Result<Connection> {
        connection.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers do not block the writer; FULL: a commit is on disk when it returns.
        connection.pragma_update(None, "journal_mode", "wal")?;
        connection.pragma_update(None, "synchronous", "full")?;
        connection.pragma_update(None, "foreign_keys", "on")?;
        let page_size: i64 = connection.pragma_query_value(None, "page_size", |row| row.get(0))?;
        let pages = (self.max_bytes / page_size.max(512) as u64).max(1);
        connection.pragma_update(None, "max_page_count", pages as i64)?;
        connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        connection.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA,
            false,
        )?;
        // No ATTACH at all (this also blocks `VACUUM INTO` another file).
        connection.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        let host_statement = self.host_statement.clone();
        connection.authorizer(Some(move |context: AuthContext<'_>| {
            authorize(&context, host_statement.load(Ordering::Relaxed))
        }))?;
        let deadline = self.deadline.clone();
        connection.progress_handler(
            PROGRESS_OPS,
            Some(move || {
                let at = deadline.load(Ordering::Relaxed);
                at != 0 && as_nanos(Instant::now()) >= at
            }),
        )?;
        Ok(connection)
    }

    /// Runs `work` on this database's connection (opening it if closed) with the
    /// request's deadline armed.
    fn with_connection<T>(
        &self,
        deadline: Option<Instant>,
        work: impl FnOnce(&mut Connection, &AtomicBool) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let mut slot = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(self.open()?);
        }
        let Some(connection) = slot.as_mut() else {
            return Err(SqlError::Unavailable(
                "the database connection is unavailable".into(),
            ));
        };
        // 0 means no deadline, so a deadline at the clock's base is stored as 1.
        let at = deadline.map_or(0, |at| as_nanos(at).max(1));
        self.deadline.store(at, Ordering::Relaxed);
        let outcome = work(connection, &self.host_statement);
        self.deadline.store(0, Ordering::Relaxed);
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        outcome
    }
}

impl SqlBackend for SqliteDatabases {
    fn open(
        &self,
        tenant: &str,
        binding: &str,
        max_bytes: u64,
    ) -> Result<Arc<dyn SqlDatabase>, SqlError> {
        Ok(Arc::new(self.database(tenant, binding, max_bytes)))
    }
}

impl SqliteDb {
    /// Runs `work` on this database's thread and waits for its answer without blocking
    /// the async thread.
    async fn on_thread<T: Send + 'static>(
        self: &Arc<Self>,
        limits: StatementLimits,
        work: impl FnOnce(&mut Connection, &AtomicBool, &mut Budget) -> Result<T, SqlError>
        + Send
        + 'static,
    ) -> Result<T, SqlError> {
        let db = self.clone();
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move || {
            let mut budget = Budget::new(limits.max_result_bytes);
            let result = db.with_connection(limits.deadline, |connection, host_statement| {
                work(connection, host_statement, &mut budget)
            });
            let _ = reply.send(result);
        }))?;
        // The job dropped unanswered: it panicked on the database's thread.
        outcome
            .await
            .unwrap_or_else(|_| Err(SqlError::Unavailable("the SQL worker failed".into())))
    }
}

#[async_trait]
impl SqlDatabase for Arc<SqliteDb> {
    async fn transaction(&self, step: TransactionStep) -> Result<(), SqlError> {
        self.on_thread(
            StatementLimits::NONE,
            move |connection, host_statement, _| transaction_step(connection, host_statement, step),
        )
        .await
    }

    async fn run(
        &self,
        sql: String,
        params: Vec<Value>,
        limits: StatementLimits,
    ) -> Result<StatementResult, SqlError> {
        self.on_thread(limits, move |connection, _, budget| {
            run(connection, &sql, params, budget)
        })
        .await
    }

    async fn batch(
        &self,
        statements: Vec<Statement>,
        limits: StatementLimits,
    ) -> Result<Vec<StatementResult>, SqlError> {
        self.on_thread(limits, move |connection, host_statement, budget| {
            run_batch(connection, host_statement, statements, budget)
        })
        .await
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;

    use super::*;

    pub(super) fn database(dir: &Path) -> Arc<SqliteDb> {
        SqliteDatabases::with_idle_close(dir.to_path_buf(), Duration::from_millis(200)).database(
            "t",
            "DB",
            1 << 30,
        )
    }

    pub(super) fn exec(db: &SqliteDb, sql: &str) -> Result<StatementResult, SqlError> {
        db.with_connection(None, |connection, _| {
            run(connection, sql, Vec::new(), &mut Budget::new(1 << 20))
        })
    }

    #[test]
    fn escapes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(dir.path());
        for sql in [
            "ATTACH DATABASE '/tmp/other.db' AS other",
            "PRAGMA journal_mode = delete",
            "PRAGMA writable_schema = on",
            "SELECT load_extension('x')",
            "BEGIN",
            "VACUUM INTO '/tmp/copy.db'",
        ] {
            assert!(exec(&db, sql).is_err(), "`{sql}` must be refused");
        }
        exec(&db, "CREATE TABLE t (x)").expect("create");
        exec(&db, "PRAGMA table_info(t)").expect("introspection is allowed");
    }

    #[test]
    fn the_deadline_interrupts_a_long_query() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(dir.path());
        let deadline = Instant::now() + Duration::from_millis(100);
        let outcome = db.with_connection(Some(deadline), |connection, _| {
            let mut budget = Budget::new(1 << 20);
            run(
                connection,
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
                Vec::new(),
                &mut budget,
            )
        });
        let error = outcome.expect_err("an endless query must be stopped");
        assert!(matches!(error, SqlError::Deadline), "{error}");
    }

    #[test]
    fn the_size_cap_refuses_growth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = SqliteDatabases::new(dir.path().to_path_buf()).database("t", "DB", 64 * 1024);
        exec(&db, "CREATE TABLE t (x)").expect("create");
        let outcome = exec(&db, "INSERT INTO t SELECT zeroblob(200000)");
        let error = outcome.expect_err("a row beyond the cap must fail");
        assert!(matches!(error, SqlError::Full), "{error}");
    }

    #[test]
    fn a_missing_table_is_not_found_and_a_syntax_error_is_the_statement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(dir.path());
        let missing = exec(&db, "SELECT * FROM nowhere").expect_err("no table");
        assert!(
            matches!(&missing, SqlError::NotFound(m) if m.contains("nowhere")),
            "{missing}"
        );
        let syntax = exec(&db, "SELEC 1").expect_err("bad syntax");
        assert!(matches!(syntax, SqlError::Statement(_)), "{syntax}");
    }

    #[test]
    fn a_result_over_the_budget_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(dir.path());
        let outcome = db.with_connection(None, |connection, _| {
            run(
                connection,
                "SELECT zeroblob(4096)",
                Vec::new(),
                &mut Budget::new(1024),
            )
        });
        assert!(matches!(
            outcome,
            Err(SqlError::ResultTooLarge { limit: 1024 })
        ));
    }

    #[tokio::test]
    async fn a_failing_batch_applies_nothing_and_names_the_statement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(dir.path());
        let limits = StatementLimits {
            deadline: None,
            max_result_bytes: 1 << 20,
        };
        db.run("CREATE TABLE t (x UNIQUE)".into(), Vec::new(), limits)
            .await
            .expect("create");
        let statement = |sql: &str| Statement {
            sql: sql.into(),
            params: Vec::new(),
        };
        let failed = db
            .batch(
                vec![
                    statement("INSERT INTO t VALUES (1)"),
                    statement("INSERT INTO t VALUES (1)"),
                ],
                limits,
            )
            .await
            .expect_err("the second insert breaks the constraint");
        assert!(
            matches!(failed, SqlError::InBatch { index: 1, .. }),
            "{failed}"
        );
        let count = db
            .run("SELECT count(*) FROM t".into(), Vec::new(), limits)
            .await
            .expect("count");
        assert!(matches!(count.rows[0][0], Value::Integer(0)));
    }
}
