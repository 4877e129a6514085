//! Alarms: each object may have one, a time at which the node runs its `alarm` event.
//!
//! A tenant's alarms live in one SQLite table beside its objects' databases
//! (`objects/<tenant>/_alarms.sqlite`), so after a restart the node finds every alarm
//! due without opening each object's file. A row is claimed (`running`) while its event
//! runs; the event's success deletes it, a failure puts it back later (at-least-once,
//! Workers' exponential backoff from 2 s, six retries). An alarm set again while its
//! event runs gets a new `generation`, which the settling of the old one leaves alone.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::sql::{SqlDatabase, SqlError, StatementLimits, Value};

/// Retries after a failed alarm event, before it is given up (Workers': 6).
pub const ALARM_RETRIES: i64 = 6;
/// The wait before the first retry; each next one doubles it (Workers': 2 s).
pub const ALARM_FIRST_BACKOFF: Duration = Duration::from_secs(2);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS alarms (
    class TEXT NOT NULL, id TEXT NOT NULL, at_ms INTEGER NOT NULL,
    attempt INTEGER NOT NULL, generation INTEGER NOT NULL, running INTEGER NOT NULL,
    PRIMARY KEY (class, id))";

/// One tenant's alarms.
pub struct AlarmIndex {
    database: Arc<dyn SqlDatabase>,
    /// Woken when an alarm is set, so the scheduler looks at the table again.
    changed: Notify,
    ready: tokio::sync::OnceCell<()>,
}

/// An alarm that is due, as claimed for its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAlarm {
    /// The object's class.
    pub class: String,
    /// The object's id (hex).
    pub id: String,
    /// When it was set for, ms since the Unix epoch.
    pub at_ms: i64,
    /// Retries so far (0 on the first run).
    pub attempt: i64,
    generation: i64,
}

/// What the scheduler finds next.
pub enum NextAlarm {
    /// No alarm is set.
    None,
    /// The earliest is due at this time (ms since the Unix epoch).
    At(i64),
    /// This one is due now and claimed.
    Due(DueAlarm),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl AlarmIndex {
    pub(crate) fn new(database: Arc<dyn SqlDatabase>) -> AlarmIndex {
        AlarmIndex {
            database,
            changed: Notify::new(),
            ready: tokio::sync::OnceCell::new(),
        }
    }

    async fn run(
        &self,
        sql: &str,
        params: Vec<Value>,
    ) -> Result<crate::sql::StatementResult, SqlError> {
        self.ready
            .get_or_try_init(|| async {
                self.database
                    .run(SCHEMA.into(), Vec::new(), StatementLimits::NONE)
                    .await
                    .map(|_| ())
            })
            .await?;
        self.database
            .run(sql.into(), params, StatementLimits::NONE)
            .await
    }

    /// Sets object (`class`, `id`)'s alarm to `at_ms`, replacing any; durable on return.
    pub async fn set(&self, class: &str, id: &str, at_ms: i64) -> Result<(), SqlError> {
        self.run(
            "INSERT INTO alarms (class, id, at_ms, attempt, generation, running)
             VALUES (?1, ?2, ?3, 0, (SELECT COALESCE(MAX(generation), 0) + 1 FROM alarms), 0)
             ON CONFLICT (class, id) DO UPDATE SET at_ms = excluded.at_ms, attempt = 0,
               generation = excluded.generation, running = 0",
            vec![
                Value::Text(class.into()),
                Value::Text(id.into()),
                Value::Integer(at_ms),
            ],
        )
        .await?;
        self.changed.notify_one();
        Ok(())
    }

    /// The object's alarm, unless unset or running now (as on Workers).
    pub async fn get(&self, class: &str, id: &str) -> Result<Option<i64>, SqlError> {
        let result = self
            .run(
                "SELECT at_ms FROM alarms WHERE class = ?1 AND id = ?2 AND running = 0",
                vec![Value::Text(class.into()), Value::Text(id.into())],
            )
            .await?;
        Ok(result.rows.first().and_then(|row| match row.first() {
            Some(Value::Integer(at)) => Some(*at),
            _ => None,
        }))
    }

    /// Deletes the object's alarm, if any.
    pub async fn delete(&self, class: &str, id: &str) -> Result<(), SqlError> {
        self.run(
            "DELETE FROM alarms WHERE class = ?1 AND id = ?2",
            vec![Value::Text(class.into()), Value::Text(id.into())],
        )
        .await?;
        Ok(())
    }

    /// After a restart: alarms whose event was running are due again.
    pub async fn release_claims(&self) -> Result<(), SqlError> {
        self.run(
            "UPDATE alarms SET running = 0 WHERE running = 1",
            Vec::new(),
        )
        .await?;
        Ok(())
    }

    /// Waits until an alarm is set (or `limit` passes).
    pub async fn changed(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.changed.notified()).await;
    }

    /// The earliest alarm, claimed if it is due.
    pub async fn next(&self) -> Result<NextAlarm, SqlError> {
        let result = self
            .run(
                "SELECT class, id, at_ms, attempt, generation FROM alarms WHERE running = 0
                 ORDER BY at_ms LIMIT 1",
                Vec::new(),
            )
            .await?;
        let Some(row) = result.rows.into_iter().next() else {
            return Ok(NextAlarm::None);
        };
        let mut row = row.into_iter();
        let (
            Some(Value::Text(class)),
            Some(Value::Text(id)),
            Some(Value::Integer(at_ms)),
            Some(Value::Integer(attempt)),
            Some(Value::Integer(generation)),
        ) = (row.next(), row.next(), row.next(), row.next(), row.next())
        else {
            return Err(SqlError::Unavailable("the alarm table is damaged".into()));
        };
        if at_ms > now_ms() {
            return Ok(NextAlarm::At(at_ms));
        }
        self.run(
            "UPDATE alarms SET running = 1 WHERE class = ?1 AND id = ?2 AND generation = ?3",
            vec![
                Value::Text(class.clone()),
                Value::Text(id.clone()),
                Value::Integer(generation),
            ],
        )
        .await?;
        Ok(NextAlarm::Due(DueAlarm {
            class,
            id,
            at_ms,
            attempt,
            generation,
        }))
    }

    /// Settles a claimed alarm after its event: gone when it succeeded (or has no retry
    /// left), else due again after the backoff. Answers the retry time, if one is set.
    pub async fn settle(&self, due: &DueAlarm, succeeded: bool) -> Result<Option<i64>, SqlError> {
        let key = vec![
            Value::Text(due.class.clone()),
            Value::Text(due.id.clone()),
            Value::Integer(due.generation),
        ];
        if succeeded || due.attempt >= ALARM_RETRIES {
            self.run(
                "DELETE FROM alarms WHERE class = ?1 AND id = ?2 AND generation = ?3 AND running = 1",
                key,
            )
            .await?;
            return Ok(None);
        }
        let backoff = ALARM_FIRST_BACKOFF.as_millis() as i64 * (1 << due.attempt.min(20));
        let retry_at = now_ms() + backoff;
        let mut params = key;
        params.push(Value::Integer(retry_at));
        self.run(
            "UPDATE alarms SET running = 0, attempt = attempt + 1, at_ms = ?4
             WHERE class = ?1 AND id = ?2 AND generation = ?3 AND running = 1",
            params,
        )
        .await?;
        self.changed.notify_one();
        Ok(Some(retry_at))
    }
}
