//! Counters as Durable Objects, one object per name on the `COUNTERS` binding
//! (`durable_objects = { COUNTERS = { class = "Counter" } }`).
//!
//! - `POST /counter/NAME` increments NAME and answers the new count; `GET` reads it.
//!   Concurrent increments never lose one: the object runs one event at a time.
//! - `GET /counter/NAME/events` answers how many events this live instance of the object
//!   has run (1 after it starts again: after idling, a deploy or a limit hit).
//! - `GET /counter/NAME/id` answers the object's id; `GET /id?string=ID` takes an id back
//!   (400 for an id of another class or tenant).
//! - `POST /counter/NAME/alarm?in_ms=N[&fail=K][&hold_ms=H]` sets the object's alarm N ms
//!   ahead (its first K runs fail, to show retries; each run takes H ms, to show how many
//!   run at once); `GET .../alarm` answers when it is set for (ms)
//!   or `none`; `GET .../alarms` answers how many alarms ran and the last retry count.
//! - `POST /counter/NAME/spin` and `/grow` loop and allocate inside the object, to show a
//!   limit ends that object's event only.
//!
//! Mounted under a path route, set `vars = { BASE_PATH = "/objects" }`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outpost_sdk::objects::{ListOptions, Storage};
use outpost_sdk::reexports::serde_json::json;
use outpost_sdk::{AlarmInfo, DurableObject, Env, Error, Method, Request, Response, Result, State};

const BINDING: &str = "COUNTERS";

#[outpost_sdk::fetch(objects = [Counter])]
async fn fetch(req: Request, env: Env) -> Result<Response> {
    let base = env.var("BASE_PATH").unwrap_or_default();
    let counters = env.durable_object(BINDING)?;
    let path = req.path_after(&base).to_string();
    if path == "/id" {
        let string = req
            .query_param("string")
            .ok_or_else(|| Error::bad_request("give ?string=ID"))?;
        let id = counters.id_from_string(&string)?;
        return Ok(Response::text(format!("{} {id}", id.class)));
    }
    let Some(rest) = path.strip_prefix("/counter/") else {
        return Err(Error::not_found());
    };
    let (name, action) = rest.split_once('/').unwrap_or((rest, ""));
    if name.is_empty() {
        return Err(Error::bad_request("give /counter/NAME"));
    }
    // The object sees only what it acts on.
    let query = req.query().map(|q| format!("?{q}")).unwrap_or_default();
    let forwarded = Request::new(req.method().clone(), &format!("/{action}{query}"))?;
    counters.get_by_name(name).fetch(forwarded).await
}

/// One counter. `count` is loaded from storage by the first event after a start.
#[outpost_sdk::durable_object]
struct Counter {
    state: State,
    count: Option<i64>,
    events: u64,
}

impl DurableObject for Counter {
    fn new(state: State, _env: Env) -> Counter {
        Counter {
            state,
            count: None,
            events: 0,
        }
    }

    async fn fetch(&mut self, req: Request) -> Result<Response> {
        self.events += 1;
        let storage = self.state.storage();
        let count = match self.count {
            Some(count) => count,
            None => storage.get_json("count").await?.unwrap_or(0),
        };
        self.count = Some(count);
        match (req.method().clone(), req.path()) {
            (Method::GET, "/") => Ok(Response::text(count.to_string())),
            (Method::POST, "/") => {
                let next = count + 1;
                // Durable before the response is sent; memory follows storage.
                storage.put_json("count", &next).await?;
                self.count = Some(next);
                Ok(Response::text(next.to_string()))
            }
            (Method::GET, "/events") => Ok(Response::text(self.events.to_string())),
            (Method::POST, "/alarm") => {
                let number = |name: &str| -> Result<u64> {
                    req.query_param(name)
                        .unwrap_or_else(|| "0".into())
                        .parse()
                        .map_err(|_| Error::bad_request(format!("`{name}` must be a number")))
                };
                let at = SystemTime::now() + Duration::from_millis(number("in_ms")?);
                storage.put_json("fail_left", &number("fail")?).await?;
                storage.put_json("hold_ms", &number("hold_ms")?).await?;
                storage.set_alarm(at).await?;
                Ok(Response::text("set"))
            }
            (Method::GET, "/alarm") => Ok(Response::text(match storage.get_alarm().await? {
                Some(at) => at
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
                    .to_string(),
                None => "none".into(),
            })),
            (Method::GET, "/alarms") => {
                let ran: u64 = storage.get_json("alarms_ran").await?.unwrap_or(0);
                let retry: u32 = storage.get_json("last_retry").await?.unwrap_or(0);
                Ok(Response::text(format!("{ran} {retry}")))
            }
            (Method::POST, "/storage") => storage_tour(&storage).await,
            (Method::POST, "/open-transaction") => {
                // Transactions go through `storage.transaction`; SQL of its own is refused.
                storage.sql("CREATE TABLE IF NOT EXISTS notes (body TEXT)", vec![]).await?;
                match storage.sql("BEGIN", vec![]).await {
                    Ok(_) => Ok(Response::text("BEGIN was accepted")),
                    Err(error) => Ok(Response::text(format!("refused: {error}"))),
                }
            }
            (Method::GET, "/notes") => {
                let (rows, _) = storage.sql("SELECT count(*) AS n FROM notes", vec![]).await?;
                let n: i64 = rows.first().map_or(Ok(0), |row| row.get("n"))?;
                Ok(Response::text(n.to_string()))
            }
            (Method::GET, "/id") => Ok(Response::text(self.state.id().to_string())),
            (Method::POST, "/spin") => {
                let mut spins: u64 = 0;
                loop {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
            }
            (Method::POST, "/grow") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => Err(Error::not_found()),
        }
    }

    async fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let storage = self.state.storage();
        let fail_left: u64 = storage.get_json("fail_left").await?.unwrap_or(0);
        if fail_left > 0 {
            storage.put_json("fail_left", &(fail_left - 1)).await?;
            return Err(Error::internal("this alarm was told to fail"));
        }
        // A slow alarm, to show how many run at once.
        let hold_ms: u64 = storage.get_json("hold_ms").await?.unwrap_or(0);
        outpost_sdk::sleep(Duration::from_millis(hold_ms)).await;
        let ran: u64 = storage.get_json("alarms_ran").await?.unwrap_or(0);
        storage.put_json("alarms_ran", &(ran + 1)).await?;
        storage.put_json("last_retry", &info.retry_count).await?;
        Ok(())
    }
}

/// Every storage call once, answered as JSON, for the tests.
async fn storage_tour(storage: &Storage) -> Result<Response> {
    storage.delete_all().await?;
    let entries: Vec<(String, Vec<u8>)> = ["a1", "a2", "a3", "b1", "b2"]
        .iter()
        .map(|k| (k.to_string(), k.as_bytes().to_vec()))
        .collect();
    storage.put_many(&entries).await?;
    let keys = |found: Vec<(String, Vec<u8>)>| -> Vec<String> {
        found.into_iter().map(|(k, _)| k).collect()
    };
    let prefix = keys(
        storage
            .list(ListOptions { prefix: Some("a".into()), ..Default::default() })
            .await?,
    );
    let range = keys(
        storage
            .list(ListOptions {
                start: Some("a2".into()),
                end: Some("b2".into()),
                ..Default::default()
            })
            .await?,
    );
    let last_two = keys(
        storage
            .list(ListOptions { reverse: true, limit: Some(2), ..Default::default() })
            .await?,
    );
    let deleted = storage.delete(&["a1".into(), "zz".into()]).await?;
    let many = keys(storage.get_many(&["a1".into(), "a2".into(), "b1".into()]).await?);
    storage
        .sql("CREATE TABLE IF NOT EXISTS t (n INTEGER)", vec![])
        .await?;
    storage
        .transaction(|tx| async move {
            tx.sql("INSERT INTO t VALUES (1)", vec![]).await?;
            tx.put("in-commit", "yes").await
        })
        .await?;
    let rolled: Result<()> = storage
        .transaction(|tx| async move {
            tx.sql("INSERT INTO t VALUES (2)", vec![]).await?;
            tx.put("in-rollback", "yes").await?;
            Err(Error::internal("roll it back"))
        })
        .await;
    let (rows, _) = storage.sql("SELECT n FROM t ORDER BY n", vec![]).await?;
    let numbers: Vec<i64> = rows.iter().map(|row| row.get("n")).collect::<Result<_>>()?;
    let committed = storage.get("in-commit").await?.is_some();
    let rolled_back = rolled.is_err() && storage.get("in-rollback").await?.is_none();
    storage.delete_all().await?;
    let after_delete_all = storage.list(ListOptions::default()).await?.len();
    Response::json(&json!({
        "prefix": prefix, "range": range, "last_two": last_two, "deleted": deleted,
        "many": many, "sql": numbers, "committed": committed, "rolled_back": rolled_back,
        "after_delete_all": after_delete_all,
    }))
}
