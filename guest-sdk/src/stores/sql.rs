//! SQL on SQLite (D1's model): typed parameters, rows, and batches in one transaction.

use std::rc::Rc;

use super::store_error;
use super::wit::outpost::edge::sql as host;
use crate::{Error, Result};

pub use host::Value;

/// A SQLite database (`env.sql("NAME")`).
#[derive(Clone)]
pub struct Sql {
    name: Rc<str>,
    db: Rc<host::Database>,
}

/// Builds a parameter list: `params![id, "text", 1.5, None::<i64>]`.
#[macro_export]
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        vec![$($crate::stores::sql::Value::from($value)),*]
    };
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Integer(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Integer(v.into())
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Integer(v.into())
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Integer(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl Value {
    /// As JSON: integers and reals as numbers, text as strings, blobs as arrays of bytes.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Integer(i) => (*i).into(),
            Value::Real(r) => (*r).into(),
            Value::Text(t) => t.clone().into(),
            Value::Blob(b) => b.clone().into(),
        }
    }
}

/// Reads a column's value as a Rust type.
pub trait FromValue: Sized {
    /// `None` if the value has another type.
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Option<i64> {
        match value {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromValue for f64 {
    fn from_value(value: &Value) -> Option<f64> {
        match value {
            Value::Real(r) => Some(*r),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl FromValue for bool {
    fn from_value(value: &Value) -> Option<bool> {
        i64::from_value(value).map(|i| i != 0)
    }
}
impl FromValue for String {
    fn from_value(value: &Value) -> Option<String> {
        match value {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Option<Vec<u8>> {
        match value {
            Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Option<Option<T>> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// The rows a query returned.
#[derive(Debug, Clone)]
pub struct Rows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Each row's values, in column order.
    pub rows: Vec<Vec<Value>>,
}

/// One row, with its column names.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl<'a> Row<'a> {
    /// The value of column `name` as `T`; a missing column or another type is an error.
    pub fn get<T: FromValue>(&self, name: &str) -> Result<T> {
        let index = self
            .columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| Error::internal(format!("no column `{name}` in the result")))?;
        T::from_value(&self.values[index]).ok_or_else(|| {
            Error::internal(format!(
                "column `{name}` holds {:?}, not the type asked for",
                self.values[index]
            ))
        })
    }

    /// The row as a JSON object keyed by column name.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.columns
                .iter()
                .zip(self.values)
                .map(|(c, v)| (c.clone(), v.to_json()))
                .collect(),
        )
    }
}

impl Rows {
    /// The rows in order.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }

    /// The first row, if any.
    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows as a JSON array of objects (D1's `.all()` shape).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(self.iter().map(|row| row.to_json()).collect())
    }
}

/// What a write changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execution {
    /// Rows inserted, updated or deleted.
    pub changes: u64,
    /// The rowid of the last insert.
    pub last_insert_rowid: i64,
}

/// One statement of a batch.
#[derive(Debug, Clone)]
pub struct Statement {
    sql: String,
    params: Vec<Value>,
}

impl Statement {
    /// `sql` with `params` bound to its `?` placeholders.
    pub fn new(sql: impl Into<String>, params: Vec<Value>) -> Statement {
        Statement {
            sql: sql.into(),
            params,
        }
    }
}

/// One statement's outcome in a batch.
#[derive(Debug, Clone)]
pub struct StatementResult {
    /// Its rows (empty for writes).
    pub rows: Rows,
    /// What it changed.
    pub execution: Execution,
}

impl Sql {
    pub(crate) fn open(name: &str) -> Result<Sql> {
        let db = host::Database::open(name)
            .map_err(|e| store_error(format_args!("opening sql `{name}`"), e))?;
        Ok(Sql {
            name: name.into(),
            db: Rc::new(db),
        })
    }

    fn fail(&self) -> impl FnOnce(super::HostError) -> Error {
        let name = self.name.clone();
        move |e| store_error(format_args!("sql `{name}`"), e)
    }

    /// Runs one statement and returns its rows.
    pub async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Rows> {
        let rows = self.db.query(sql, &params).map_err(self.fail())?;
        Ok(Rows {
            columns: rows.columns,
            rows: rows.rows,
        })
    }

    /// Runs one statement and returns what it changed.
    pub async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<Execution> {
        let done = self.db.execute(sql, &params).map_err(self.fail())?;
        Ok(Execution {
            changes: done.changes,
            last_insert_rowid: done.last_insert_rowid,
        })
    }

    /// Runs the statements in one transaction: all of them, or (on any error) none.
    pub async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<StatementResult>> {
        let statements: Vec<host::Statement> = statements
            .into_iter()
            .map(|s| host::Statement {
                sql: s.sql,
                params: s.params,
            })
            .collect();
        let results = self.db.batch(&statements).map_err(self.fail())?;
        Ok(results
            .into_iter()
            .map(|r| StatementResult {
                rows: Rows {
                    columns: r.columns,
                    rows: r.rows,
                },
                execution: Execution {
                    changes: r.changes,
                    last_insert_rowid: r.last_insert_rowid,
                },
            })
            .collect())
    }
}
