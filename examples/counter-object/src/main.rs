//! Counters as Durable Objects, one object per name on the `COUNTERS` binding
//! (`durable_objects = { COUNTERS = { class = "Counter" } }`).
//!
//! - `POST /counter/NAME` increments NAME and answers the new count; `GET` reads it.
//!   Concurrent increments never lose one: the object runs one event at a time.
//! - `GET /counter/NAME/events` answers how many events this live instance of the object
//!   has run (1 after it starts again: after idling, a deploy or a limit hit).
//! - `GET /counter/NAME/id` answers the object's id; `GET /id?string=ID` takes an id back
//!   (400 for an id of another class or tenant).
//! - `POST /counter/NAME/spin` and `/grow` loop and allocate inside the object, to show a
//!   limit ends that object's event only.
//!
//! Mounted under a path route, set `vars = { BASE_PATH = "/objects" }`.

use outpost_sdk::{DurableObject, Env, Error, Method, Request, Response, Result, State};

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
    let forwarded = Request::new(req.method().clone(), &format!("/{action}"))?;
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
}
