//! Each database's own thread, which runs its statements one after another. Under load
//! the thread drains many queued statements in one go, where a blocking-pool task per
//! statement would cost two thread hand-offs each (and show in the tail latency).

use std::sync::mpsc;
use std::time::Duration;

use super::SqliteDb;
use crate::sql::SqlError;

/// Work for a database's thread.
pub(super) type Job = Box<dyn FnOnce() + Send>;

/// How long a database's thread waits for work before it ends.
const WORKER_IDLE: Duration = Duration::from_secs(10);

impl SqliteDb {
    /// Queues `job` for this database's thread, starting the thread if it is not
    /// running (first use, or it ended idle or after a panic).
    pub(super) fn submit(&self, job: Job) -> Result<(), SqlError> {
        let mut worker = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        let mut job = job;
        if let Some(queue) = worker.as_ref() {
            match queue.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(returned)) => job = returned,
            }
        }
        let (queue, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("outpost-sql".into())
            .spawn(move || {
                while let Ok(job) = jobs.recv_timeout(WORKER_IDLE) {
                    job();
                }
            })
            .map_err(|e| {
                SqlError::Unavailable(format!("cannot start the database's thread: {e}"))
            })?;
        queue
            .send(job)
            .map_err(|_| SqlError::Unavailable("the database's thread ended at once".into()))?;
        *worker = Some(queue);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::tests::database;
    use super::*;

    #[test]
    fn a_database_thread_that_ended_is_started_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = database(dir.path());
        let run = |db: &Arc<SqliteDb>| {
            let (reply, answer) = mpsc::channel();
            db.submit(Box::new(move || {
                let _ = reply.send(std::thread::current().id());
            }))
            .expect("submitted");
            answer
                .recv_timeout(Duration::from_secs(10))
                .expect("the job ran")
        };
        let first = run(&db);
        assert_eq!(run(&db), first, "one thread serves the database while busy");
        // As if the thread had ended idle: its queue's receiving end is gone.
        *db.worker.lock().expect("lock") = Some(mpsc::channel().0);
        assert_ne!(run(&db), first, "a new thread took over");
    }
}
