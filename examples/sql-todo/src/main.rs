//! A to-do REST API on the `DB` SQLite binding.
//!
//! - `GET /todos` lists, `POST /todos` `{"title": "…", "done": false}` creates (201).
//! - `GET /todos/:id`, `PATCH /todos/:id` (`title` and/or `done`), `DELETE /todos/:id`.
//! - `POST /todos/bulk` `["a", "b", …]` inserts all titles in one transaction: all or none.
//!
//! The table is created on first use. Mounted under a path route, set
//! `vars = { BASE_PATH = "/sql" }`.

use outpost_sdk::stores::sql::{Row, Sql, Statement, Value};
use outpost_sdk::{Env, Error, Request, Response, Result, StoreError, params};
use serde::Deserialize;
use serde_json::json;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS todos (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    done INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL DEFAULT (unixepoch())
)";
const COLUMNS: &str = "id, title, done, created_at";

#[derive(Deserialize)]
struct NewTodo {
    title: String,
    #[serde(default)]
    done: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    title: Option<String>,
    done: Option<bool>,
}

#[outpost_sdk::fetch]
async fn fetch(req: Request, env: Env) -> Result<Response> {
    let db = env.sql("DB")?;
    let base = env.var("BASE_PATH").unwrap_or_default();
    outpost_sdk::route!(req, mount = base, {
        GET "/todos" => |_| {
            let rows = query(
                &db,
                &format!("SELECT {COLUMNS} FROM todos ORDER BY id"),
                vec![],
            )
            .await?;
            let todos: Vec<_> = rows
                .iter()
                .map(|row| todo_json(&row))
                .collect::<Result<_>>()?;
            Response::json(&todos)
        },
        POST "/todos" => |_| {
            let new: NewTodo = req.json().await?;
            check_title(&new.title)?;
            let rows = query(
                &db,
                &format!("INSERT INTO todos (title, done) VALUES (?, ?) RETURNING {COLUMNS}"),
                params![new.title, new.done],
            )
            .await?;
            let row = rows
                .first()
                .ok_or_else(|| Error::internal("INSERT returned no row"))?;
            Ok(Response::json(&todo_json(&row)?)?.with_status(201))
        },
        POST "/todos/bulk" => |_| {
            let titles: Vec<Option<String>> = req.json().await?;
            // Unchecked on purpose: the database's constraints decide, and one bad title
            // rolls back the whole batch.
            let statements = titles
                .into_iter()
                .map(|title| Statement::new("INSERT INTO todos (title) VALUES (?)", params![title]))
                .collect();
            ensure_table(&db).await?;
            let results = db
                .batch(statements)
                .await
                .map_err(|e| Error::bad_request(e.message().to_string()))?;
            let ids: Vec<i64> = results
                .iter()
                .map(|r| r.execution.last_insert_rowid)
                .collect();
            Ok(Response::json(&json!({ "inserted": ids }))?.with_status(201))
        },
        GET "/todos/:id" => |params| {
            let id = params.number("id")?;
            let rows = query(
                &db,
                &format!("SELECT {COLUMNS} FROM todos WHERE id = ?"),
                params![id],
            )
            .await?;
            let row = rows.first().ok_or_else(Error::not_found)?;
            Response::json(&todo_json(&row)?)
        },
        PATCH "/todos/:id" => |params| {
            let id = params.number("id")?;
            let patch: Patch = req.json().await?;
            if let Some(title) = &patch.title {
                check_title(title)?;
            }
            let rows = query(
                &db,
                &format!(
                    "UPDATE todos SET title = coalesce(?, title), done = coalesce(?, done)
                     WHERE id = ? RETURNING {COLUMNS}"
                ),
                params![patch.title, patch.done, id],
            )
            .await?;
            let row = rows.first().ok_or_else(Error::not_found)?;
            Response::json(&todo_json(&row)?)
        },
        DELETE "/todos/:id" => |params| {
            let id = params.number("id")?;
            ensure_table(&db).await?;
            let done = db
                .execute("DELETE FROM todos WHERE id = ?", params![id])
                .await?;
            if done.changes == 0 {
                return Err(Error::not_found());
            }
            Ok(Response::new(204))
        },
    })
}

fn check_title(title: &str) -> Result<()> {
    if title.trim().is_empty() || title.len() > 500 {
        return Err(Error::bad_request("`title` must be 1 to 500 characters"));
    }
    Ok(())
}

/// Runs a statement, creating the table the first time it is missing.
async fn query(db: &Sql, sql: &str, params: Vec<Value>) -> Result<outpost_sdk::stores::sql::Rows> {
    match db.query(sql, params.clone()).await {
        Err(Error::Store(StoreError::NotFound(_))) => {
            ensure_table(db).await?;
            db.query(sql, params).await
        }
        other => other,
    }
}

async fn ensure_table(db: &Sql) -> Result<()> {
    db.execute(SCHEMA, vec![]).await.map(drop)
}

fn todo_json(row: &Row<'_>) -> Result<serde_json::Value> {
    Ok(json!({
        "id": row.get::<i64>("id")?,
        "title": row.get::<String>("title")?,
        "done": row.get::<bool>("done")?,
        "created_at": row.get::<i64>("created_at")?,
    }))
}
