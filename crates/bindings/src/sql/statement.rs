//! Running statements on an open SQLite connection: typed parameters in, rows out under
//! a result budget (no result outgrows the guest's memory), batches in one transaction,
//! and SQLite's errors told apart for the guest.

use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;

use super::database::{SqlError, Statement, StatementResult, TransactionStep, Value};

/// Makes SQLite's error the guest's: the deadline, a full database and a missing table
/// are told apart; anything else is the statement's fault, with SQLite's message.
fn sql_error(error: rusqlite::Error) -> SqlError {
    match &error {
        rusqlite::Error::SqliteFailure(e, _)
            if e.code == rusqlite::ErrorCode::OperationInterrupted =>
        {
            SqlError::Deadline
        }
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DiskFull => {
            SqlError::Full
        }
        rusqlite::Error::SqliteFailure(_, Some(message))
            if message.starts_with("no such table")
                || message.starts_with("no such column")
                || message.starts_with("no such index")
                || message.starts_with("no such view") =>
        {
            SqlError::NotFound(message.clone())
        }
        _ => SqlError::Statement(error.to_string()),
    }
}

/// Rows and changes of one statement, with a running size so no result outgrows what the
/// guest could hold.
pub(super) struct Budget {
    left: u64,
    limit: u64,
}

impl Budget {
    pub(super) fn new(limit: u64) -> Budget {
        Budget { left: limit, limit }
    }

    fn take(&mut self, bytes: usize) -> Result<(), SqlError> {
        self.left = self
            .left
            .checked_sub(bytes as u64)
            .ok_or(SqlError::ResultTooLarge { limit: self.limit })?;
        Ok(())
    }
}

fn to_sql(value: Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as Sql;
    match value {
        Value::Null => Sql::Null,
        Value::Integer(i) => Sql::Integer(i),
        Value::Real(r) => Sql::Real(r),
        Value::Text(t) => Sql::Text(t),
        Value::Blob(b) => Sql::Blob(b),
    }
}

fn from_sql(value: rusqlite::types::ValueRef<'_>, budget: &mut Budget) -> Result<Value, SqlError> {
    use rusqlite::types::ValueRef;
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => {
            budget.take(t.len())?;
            Value::Text(String::from_utf8_lossy(t).into_owned())
        }
        ValueRef::Blob(b) => {
            budget.take(b.len())?;
            Value::Blob(b.to_vec())
        }
    })
}

pub(super) fn run(
    connection: &Connection,
    sql: &str,
    params: Vec<Value>,
    budget: &mut Budget,
) -> Result<StatementResult, SqlError> {
    let mut statement = connection.prepare(sql).map_err(sql_error)?;
    let columns: Vec<String> = statement.column_names().map(str::to_string).collect();
    let readonly = statement.readonly();
    let params: Vec<rusqlite::types::Value> = params.into_iter().map(to_sql).collect();
    let mut rows = statement
        .query(rusqlite::params_from_iter(params))
        .map_err(sql_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql_error)? {
        budget.take(16 * columns.len())?;
        let values = (0..columns.len())
            .map(|i| from_sql(row.get_ref(i).map_err(sql_error)?, budget))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(values);
    }
    drop(rows);
    Ok(StatementResult {
        columns,
        rows: out,
        changes: if readonly { 0 } else { connection.changes() },
        last_insert_rowid: connection.last_insert_rowid(),
    })
}

/// Runs `sql` as the host's own statement, which the authorizer lets through.
fn host_run(
    connection: &Connection,
    host_statement: &AtomicBool,
    sql: &str,
) -> Result<(), SqlError> {
    host_statement.store(true, Ordering::Relaxed);
    let done = connection.execute_batch(sql).map_err(sql_error);
    host_statement.store(false, Ordering::Relaxed);
    done
}

/// One step of a transaction that spans calls.
pub(super) fn transaction_step(
    connection: &mut Connection,
    host_statement: &AtomicBool,
    step: TransactionStep,
) -> Result<(), SqlError> {
    let open = !connection.is_autocommit();
    match step {
        TransactionStep::Begin if open => Err(SqlError::Statement(
            "a transaction is already open; commit or roll it back first".into(),
        )),
        TransactionStep::Begin => host_run(connection, host_statement, "BEGIN IMMEDIATE"),
        TransactionStep::Commit | TransactionStep::Rollback if !open => {
            Err(SqlError::Statement("no transaction is open".into()))
        }
        TransactionStep::Commit => {
            let committed = host_run(connection, host_statement, "COMMIT");
            if committed.is_err() && !connection.is_autocommit() {
                let _ = host_run(connection, host_statement, "ROLLBACK");
            }
            committed
        }
        TransactionStep::Rollback => host_run(connection, host_statement, "ROLLBACK"),
        TransactionStep::Abandon if open => host_run(connection, host_statement, "ROLLBACK"),
        TransactionStep::Abandon => Ok(()),
    }
}

pub(super) fn run_batch(
    connection: &mut Connection,
    host_statement: &AtomicBool,
    statements: Vec<Statement>,
    budget: &mut Budget,
) -> Result<Vec<StatementResult>, SqlError> {
    let host = |connection: &Connection, sql: &str| host_run(connection, host_statement, sql);
    host(connection, "BEGIN IMMEDIATE")?;
    let mut results = Vec::with_capacity(statements.len());
    for (index, statement) in statements.into_iter().enumerate() {
        match run(connection, &statement.sql, statement.params, budget) {
            Ok(result) => results.push(result),
            Err(e) => {
                if !connection.is_autocommit() {
                    let _ = host(connection, "ROLLBACK");
                }
                return Err(SqlError::InBatch {
                    index,
                    error: Box::new(e),
                });
            }
        }
    }
    if let Err(e) = host(connection, "COMMIT") {
        if !connection.is_autocommit() {
            let _ = host(connection, "ROLLBACK");
        }
        return Err(e);
    }
    Ok(results)
}
