//! The idle reaper: closes connections unused for the registry's `idle_close`, and forgets
//! databases no handle refers to any more, so a node that has served a million Durable
//! Objects (a database each) holds entries only for the ones in use.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{SqliteDatabases, SqliteDb};

pub(super) fn reap_idle(databases: &Weak<SqliteDatabases>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(databases) = databases.upgrade() else {
            return;
        };
        reap_once(&databases);
    }
}

fn reap_once(databases: &SqliteDatabases) {
    let all: Vec<Arc<SqliteDb>> = databases.lock().values().cloned().collect();
    for db in &all {
        if idle_for(db) < databases.idle_close {
            continue;
        }
        // try_lock: a database in use is not idle.
        if let Ok(mut connection) = db.connection.try_lock()
            && let Some(open) = connection.take()
            && let Err((_, e)) = open.close()
        {
            tracing::warn!(path = %db.path.display(), error = %e, "closing an idle SQLite database failed");
        }
    }
    drop(all);
    // Under the registry's lock, where `database()` hands out handles: an entry only the
    // registry holds (no handle, no queued job) and whose connection is closed can go; the
    // next `database()` makes it afresh from its file.
    databases.lock().retain(|_, db| {
        Arc::strong_count(db) > 1
            || idle_for(db) < databases.idle_close
            || db.connection.try_lock().map_or(true, |c| c.is_some())
    });
}

fn idle_for(db: &SqliteDb) -> Duration {
    db.last_used
        .lock()
        .map_or(Duration::ZERO, |at| at.elapsed())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::tests::exec;
    use super::*;

    /// Waits (up to 10 s) for `done`, failing with `never`.
    fn wait_until(never: &str, done: impl Fn() -> bool) {
        let waited = Instant::now();
        while !done() {
            assert!(waited.elapsed() < Duration::from_secs(10), "{never}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn idle_connections_close_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dbs =
            SqliteDatabases::with_idle_close(dir.path().to_path_buf(), Duration::from_millis(200));
        let db = dbs.database("t", "DB", 1 << 30);
        exec(&db, "CREATE TABLE t (x)").expect("create");
        assert_eq!(dbs.open_count(), 1);
        wait_until("the idle connection was never closed", || {
            dbs.open_count() == 0
        });
        exec(&db, "INSERT INTO t VALUES (1)").expect("reopens on use");
        assert_eq!(dbs.open_count(), 1);
    }

    #[test]
    fn a_database_no_handle_holds_is_forgotten_and_its_data_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dbs =
            SqliteDatabases::with_idle_close(dir.path().to_path_buf(), Duration::from_millis(100));
        let held = dbs.database("t", "HELD", 1 << 30);
        exec(&held, "CREATE TABLE t (x)").expect("create");
        let dropped = dbs.database("t", "DROPPED", 1 << 30);
        exec(&dropped, "CREATE TABLE t (x)").expect("create");
        exec(&dropped, "INSERT INTO t VALUES (7)").expect("insert");
        drop(dropped);
        wait_until("the unreferenced database was never forgotten", || {
            dbs.lock().len() == 1
        });
        assert!(
            dbs.lock().contains_key("t/HELD"),
            "a database with a handle stays registered"
        );
        let again = dbs.database("t", "DROPPED", 1 << 30);
        let rows = exec(&again, "SELECT x FROM t").expect("select");
        assert!(matches!(rows.rows[0][0], crate::sql::Value::Integer(7)));
    }
}
