//! The SQL backend seam: [`SqlBackend`] opens one binding's [`SqlDatabase`], the small
//! async trait a backend implements (SQLite on the node today; libSQL or rqlite would be
//! a new file beside `sqlite.rs`).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

pub use crate::generated::outpost::edge::sql::{Statement, StatementResult, Value};

/// Why a statement failed. The host maps each variant to the guest's error code.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// A table, column or other object the statement names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The database reached its size cap.
    #[error("the database is full: it reached the tenant's sql_size limit")]
    Full,
    /// The request's deadline passed; the statement was stopped.
    #[error("the statement was stopped: the request's deadline passed")]
    Deadline,
    /// The result would not fit in the guest's memory.
    #[error(
        "the result is larger than the tenant's memory limit ({limit} bytes); select fewer rows or columns"
    )]
    ResultTooLarge {
        /// The bytes a result may take.
        limit: u64,
    },
    /// The database cannot be opened or its worker started.
    #[error("{0}")]
    Unavailable(String),
    /// The statement is wrong or refused: syntax, a constraint, a denied operation.
    #[error("{0}")]
    Statement(String),
    /// In a batch: statement `index` failed, so none was applied.
    #[error("statement {index} failed, nothing was applied: {error}")]
    InBatch {
        /// Its position in the batch, from 0.
        index: usize,
        /// What it failed with.
        #[source]
        error: Box<SqlError>,
    },
}

/// What bounds one call: when it must stop, and how large its result may grow.
#[derive(Debug, Clone, Copy)]
pub struct StatementLimits {
    /// The request's deadline; the statement is interrupted after it.
    pub deadline: Option<Instant>,
    /// Bytes the rows of one call may take (the tenant's memory cap).
    pub max_result_bytes: u64,
}

impl StatementLimits {
    /// For the host's own statements: no deadline, no cap on the result.
    pub const NONE: StatementLimits = StatementLimits {
        deadline: None,
        max_result_bytes: u64::MAX,
    };
}

/// A step of a transaction that spans several calls (a Durable Object's storage, whose
/// database no one else uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStep {
    /// Opens one; an error if one is open.
    Begin,
    /// Commits the open one (durable when it returns); an error if none is open.
    Commit,
    /// Rolls the open one back; an error if none is open.
    Rollback,
    /// Rolls back one left open, if any (at the end of an event).
    Abandon,
}

/// One binding's database.
#[async_trait]
pub trait SqlDatabase: Send + Sync {
    /// Takes a step of a transaction that spans calls.
    async fn transaction(&self, step: TransactionStep) -> Result<(), SqlError> {
        let _ = step;
        Err(SqlError::Statement(
            "this SQL backend has no transactions across calls".into(),
        ))
    }
    /// Runs one statement; its rows, and what it changed.
    async fn run(
        &self,
        sql: String,
        params: Vec<Value>,
        limits: StatementLimits,
    ) -> Result<StatementResult, SqlError>;
    /// Runs `statements` in one transaction: all of them or none.
    async fn batch(
        &self,
        statements: Vec<Statement>,
        limits: StatementLimits,
    ) -> Result<Vec<StatementResult>, SqlError>;
}

/// A kind of SQL storage on the node: opens the database of one tenant binding, capped
/// at `max_bytes`.
pub trait SqlBackend: Send + Sync {
    /// The database of `tenant`'s binding `binding`.
    fn open(
        &self,
        tenant: &str,
        binding: &str,
        max_bytes: u64,
    ) -> Result<Arc<dyn SqlDatabase>, SqlError>;
}
