//! A small router: method + path pattern to a handler, relative to where the tenant is
//! mounted (workers-rs' `Router`, spin-sdk's `http::Router`).
//!
//! ```ignore
//! #[outpost_sdk::fetch]
//! async fn fetch(req: Request, env: Env) -> Result<Response> {
//!     Router::new()
//!         .mount(env.var("BASE_PATH").unwrap_or_default())
//!         .get("/todos", |_req, env, _params| list(env))
//!         .get("/todos/:id", |_req, env, params| show(env, params.number("id")))
//!         .delete("/todos/:id", |_req, env, params| remove(env, params.number("id")))
//!         .run(req, env)
//!         .await
//! }
//! ```
//!
//! Patterns are `/`-separated: a literal segment matches itself, `:name` matches any one
//! segment, and a final `*name` matches the rest (possibly empty). Routes are tried in the
//! order they were added. No path matches: 404. A path matches but not for this method:
//! 405 with `Allow`.

use std::future::Future;
use std::pin::Pin;

use crate::{Env, Error, Method, Request, Response, Result};

type Handler<'a> =
    Box<dyn Fn(Request, Env, Params) -> Pin<Box<dyn Future<Output = Result<Response>> + 'a>> + 'a>;

/// Routes requests to handlers; see the module docs.
///
/// A guest builds its router for every request (each request is a fresh instance), so
/// adding a route only stores its pattern; patterns are matched in place, and only the
/// route that answers collects its parameters.
pub struct Router<'a> {
    mount: String,
    routes: Vec<(Method, &'a str, Handler<'a>)>,
}

/// The values a pattern's `:name` and `*name` segments matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The segment matched by `:name` (or the rest matched by `*name`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The segment `name` as an integer, or a 400 saying it must be one.
    pub fn number(&self, name: &str) -> Result<i64> {
        self.get(name)
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| Error::bad_request(format!("`{name}` must be an integer")))
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// Panics on a pattern that cannot be right (a programmer error, found at once).
fn check_pattern(pattern: &str) {
    assert!(
        pattern.starts_with('/'),
        "route patterns start with `/`: `{pattern}`"
    );
    let count = segments(pattern).count();
    for (index, part) in segments(pattern).enumerate() {
        assert!(
            !part.starts_with('*') || index + 1 == count,
            "`{part}` must be the last segment of `{pattern}`"
        );
    }
}

/// Whether `pattern` matches `path`; with `params`, also collects what it matched.
fn pattern_matches(
    pattern: &str,
    path: &str,
    mut params: Option<&mut Vec<(String, String)>>,
) -> bool {
    let mut parts = segments(path);
    for segment in segments(pattern) {
        if let Some(name) = segment.strip_prefix('*') {
            if let Some(params) = params.as_mut() {
                let rest: Vec<&str> = parts.by_ref().collect();
                params.push((name.to_string(), rest.join("/")));
            }
            return true;
        }
        let Some(part) = parts.next() else {
            return false;
        };
        match segment.strip_prefix(':') {
            Some(name) => {
                if let Some(params) = params.as_mut() {
                    params.push((name.to_string(), part.to_string()));
                }
            }
            None if segment != part => return false,
            None => {}
        }
    }
    parts.next().is_none()
}

impl Default for Router<'_> {
    fn default() -> Self {
        Router::new()
    }
}

impl<'a> Router<'a> {
    /// A router with no routes, mounted at `/`.
    pub fn new() -> Router<'a> {
        Router {
            mount: String::new(),
            routes: Vec::new(),
        }
    }

    /// Patterns are relative to `prefix`: the tenant's path route (say `/sql` from a
    /// `BASE_PATH` var), so the same guest works mounted anywhere.
    pub fn mount(mut self, prefix: impl Into<String>) -> Router<'a> {
        self.mount = prefix.into();
        self
    }

    /// Adds a route for `method`.
    pub fn on<F, Fut>(mut self, method: Method, pattern: &'a str, handler: F) -> Router<'a>
    where
        F: Fn(Request, Env, Params) -> Fut + 'a,
        Fut: Future<Output = Result<Response>> + 'a,
    {
        let handler: Handler<'a> =
            Box::new(move |req, env, params| Box::pin(handler(req, env, params)));
        check_pattern(pattern);
        self.routes.push((method, pattern, handler));
        self
    }

    /// Adds a `GET` route (it answers `HEAD` too).
    pub fn get<F, Fut>(self, pattern: &'a str, handler: F) -> Router<'a>
    where
        F: Fn(Request, Env, Params) -> Fut + 'a,
        Fut: Future<Output = Result<Response>> + 'a,
    {
        self.on(Method::GET, pattern, handler)
    }

    /// Adds a `POST` route.
    pub fn post<F, Fut>(self, pattern: &'a str, handler: F) -> Router<'a>
    where
        F: Fn(Request, Env, Params) -> Fut + 'a,
        Fut: Future<Output = Result<Response>> + 'a,
    {
        self.on(Method::POST, pattern, handler)
    }

    /// Adds a `PUT` route.
    pub fn put<F, Fut>(self, pattern: &'a str, handler: F) -> Router<'a>
    where
        F: Fn(Request, Env, Params) -> Fut + 'a,
        Fut: Future<Output = Result<Response>> + 'a,
    {
        self.on(Method::PUT, pattern, handler)
    }

    /// Adds a `PATCH` route.
    pub fn patch<F, Fut>(self, pattern: &'a str, handler: F) -> Router<'a>
    where
        F: Fn(Request, Env, Params) -> Fut + 'a,
        Fut: Future<Output = Result<Response>> + 'a,
    {
        self.on(Method::PATCH, pattern, handler)
    }

    /// Adds a `DELETE` route.
    pub fn delete<F, Fut>(self, pattern: &'a str, handler: F) -> Router<'a>
    where
        F: Fn(Request, Env, Params) -> Fut + 'a,
        Fut: Future<Output = Result<Response>> + 'a,
    {
        self.on(Method::DELETE, pattern, handler)
    }

    /// Answers `req` with the first route that matches it.
    pub async fn run(self, req: Request, env: Env) -> Result<Response> {
        let path = req.path_after(&self.mount).to_string();
        match self.find(req.method(), &path) {
            Found::Route(index, params) => {
                let (_, _, handler) = &self.routes[index];
                handler(req, env, params).await
            }
            Found::OtherMethods(allowed) => Ok(Response::text("method not allowed")
                .with_status(405)
                .with_header("allow", allowed.join(", "))),
            Found::Nothing => Err(Error::not_found()),
        }
    }

    fn find(&self, method: &Method, path: &str) -> Found {
        let mut allowed: Vec<&str> = Vec::new();
        for (index, (route_method, pattern, _)) in self.routes.iter().enumerate() {
            if !pattern_matches(pattern, path, None) {
                continue;
            }
            let answers =
                route_method == method || (*route_method == Method::GET && *method == Method::HEAD);
            if answers {
                let mut params = Vec::new();
                pattern_matches(pattern, path, Some(&mut params));
                return Found::Route(index, Params(params));
            }
            if !allowed.contains(&route_method.as_str()) {
                allowed.push(route_method.as_str());
            }
        }
        if allowed.is_empty() {
            Found::Nothing
        } else {
            Found::OtherMethods(allowed.into_iter().map(str::to_string).collect())
        }
    }
}

enum Found {
    Route(usize, Params),
    OtherMethods(Vec<String>),
    Nothing,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matched(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        check_pattern(pattern);
        let mut params = Vec::new();
        let found = pattern_matches(pattern, path, Some(&mut params));
        assert_eq!(
            found,
            pattern_matches(pattern, path, None),
            "{pattern} {path}"
        );
        found.then_some(params)
    }

    #[test]
    fn literals_and_params_match_whole_segments() {
        assert_eq!(matched("/todos", "/todos"), Some(vec![]));
        assert_eq!(matched("/todos", "/todos/"), Some(vec![]));
        assert_eq!(matched("/todos", "/todosx"), None);
        assert_eq!(matched("/todos", "/todos/1"), None);
        assert_eq!(
            matched("/todos/:id", "/todos/42"),
            Some(vec![("id".into(), "42".into())])
        );
        assert_eq!(matched("/todos/:id", "/todos"), None);
        assert_eq!(matched("/", "/"), Some(vec![]));
        assert_eq!(matched("/", "/x"), None);
    }

    #[test]
    fn a_rest_segment_takes_everything_after() {
        assert_eq!(
            matched("/files/*key", "/files/a/b/c.txt"),
            Some(vec![("key".into(), "a/b/c.txt".into())])
        );
        assert_eq!(
            matched("/files/*key", "/files"),
            Some(vec![("key".into(), String::new())])
        );
    }

    #[test]
    #[should_panic(expected = "must be the last segment")]
    fn a_rest_segment_in_the_middle_is_a_programmer_error() {
        check_pattern("/files/*key/meta");
    }

    fn router() -> Router<'static> {
        let ok = |_: Request, _: Env, _: Params| async { Ok(Response::new(200)) };
        Router::new()
            .get("/todos", ok)
            .post("/todos", ok)
            .post("/todos/bulk", ok)
            .get("/todos/:id", ok)
            .delete("/todos/:id", ok)
    }

    #[test]
    fn the_first_route_that_matches_wins_and_get_answers_head() {
        let router = router();
        assert!(matches!(
            router.find(&Method::POST, "/todos/bulk"),
            Found::Route(2, _)
        ));
        assert!(matches!(
            router.find(&Method::GET, "/todos/bulk"),
            Found::Route(3, _)
        ));
        assert!(matches!(
            router.find(&Method::HEAD, "/todos"),
            Found::Route(0, _)
        ));
    }

    #[test]
    fn a_known_path_with_another_method_lists_the_allowed_ones() {
        match router().find(&Method::PUT, "/todos/7") {
            Found::OtherMethods(allowed) => assert_eq!(allowed, ["GET", "DELETE"]),
            _ => panic!("expected 405"),
        }
        assert!(matches!(
            router().find(&Method::GET, "/nothing"),
            Found::Nothing
        ));
    }

    #[test]
    fn params_parse_numbers_or_say_why_not() {
        let params = Params(vec![
            ("id".into(), "12".into()),
            ("name".into(), "x".into()),
        ]);
        assert_eq!(params.number("id").expect("a number"), 12);
        assert_eq!(
            params.number("name").expect_err("not a number").status(),
            400
        );
        assert_eq!(params.get("missing"), None);
    }
}
