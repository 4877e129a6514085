//! The `outpost:edge/sql` host calls.

use std::sync::Arc;

use wasmtime::component::Resource;

use super::database::{SqlDatabase, SqlError, StatementLimits};
use super::{SqlCtxView, SqlHandle};
use crate::generated::outpost::edge::sql::{
    Execution, Host, HostDatabase, Rows, Statement, StatementResult, Value,
};
use crate::{EdgeError, EdgeResult, ErrorCode};

impl From<SqlError> for EdgeError {
    fn from(error: SqlError) -> EdgeError {
        match error {
            SqlError::NotFound(text) => ErrorCode::NotFound(text).into(),
            SqlError::Full => ErrorCode::Full(SqlError::Full.to_string()).into(),
            SqlError::Deadline => ErrorCode::Deadline.into(),
            SqlError::ResultTooLarge { .. } => {
                EdgeError::limit("sql.result_bytes", error.to_string())
            }
            SqlError::Unavailable(text) => EdgeError::unavailable(format!("sql: {text}")),
            SqlError::Statement(text) => EdgeError::store(text),
            // The guest learns which statement failed; the kind is the inner error's.
            SqlError::InBatch { index, error } => match EdgeError::from(*error).into_code() {
                Ok(ErrorCode::Store(text)) => EdgeError::store(format!(
                    "statement {index} failed, nothing was applied: {text}"
                )),
                Ok(ErrorCode::NotFound(text)) => ErrorCode::NotFound(format!(
                    "statement {index} failed, nothing was applied: {text}"
                ))
                .into(),
                Ok(code) => code.into(),
                Err(trap) => trap.into(),
            },
        }
    }
}

impl SqlCtxView<'_> {
    fn database(&self, handle: &Resource<SqlHandle>) -> EdgeResult<Arc<dyn SqlDatabase>> {
        Ok(self.table.get(handle)?.database.clone())
    }

    fn limits(&self) -> StatementLimits {
        StatementLimits {
            deadline: self.deadline,
            max_result_bytes: self.ctx.max_result_bytes,
        }
    }

    async fn run(
        &mut self,
        handle: &Resource<SqlHandle>,
        op: &'static str,
        sql: String,
        params: Vec<Value>,
    ) -> EdgeResult<StatementResult> {
        let _timer = self.ctx.meters.time(&self.ctx.tenant, "sql", op);
        let database = self.database(handle)?;
        Ok(database.run(sql, params, self.limits()).await?)
    }
}

crate::error::convert_edge_errors!(SqlCtxView<'_>);

impl HostDatabase for SqlCtxView<'_> {
    async fn open(&mut self, name: String) -> EdgeResult<Resource<SqlHandle>> {
        let Some(backend) = self.ctx.bindings.get(&name) else {
            return Err(crate::undeclared("sql", &name, &self.ctx.tenant));
        };
        let database = backend.open(&self.ctx.tenant, &name, self.ctx.max_database_bytes)?;
        Ok(self.table.push(SqlHandle { database })?)
    }

    async fn query(
        &mut self,
        this: Resource<SqlHandle>,
        sql: String,
        params: Vec<Value>,
    ) -> EdgeResult<Rows> {
        let result = self.run(&this, "query", sql, params).await?;
        Ok(Rows {
            columns: result.columns,
            rows: result.rows,
        })
    }

    async fn execute(
        &mut self,
        this: Resource<SqlHandle>,
        sql: String,
        params: Vec<Value>,
    ) -> EdgeResult<Execution> {
        let result = self.run(&this, "execute", sql, params).await?;
        Ok(Execution {
            changes: result.changes,
            last_insert_rowid: result.last_insert_rowid,
        })
    }

    async fn batch(
        &mut self,
        this: Resource<SqlHandle>,
        statements: Vec<Statement>,
    ) -> EdgeResult<Vec<StatementResult>> {
        let _timer = self.ctx.meters.time(&self.ctx.tenant, "sql", "batch");
        let database = self.database(&this)?;
        Ok(database.batch(statements, self.limits()).await?)
    }

    async fn drop(&mut self, this: Resource<SqlHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl Host for SqlCtxView<'_> {}
