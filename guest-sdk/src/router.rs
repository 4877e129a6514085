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
use std::marker::PhantomData;
use std::pin::Pin;

use crate::{Env, Error, Method, Request, Response, Result};

/// Routes requests to handlers; see the module docs.
///
/// A guest builds its router for every request (each request is a fresh instance), so
/// building must cost nothing: each route is a type of its own holding its handler, with
/// no allocation and no dynamic dispatch, and patterns are matched in place; only the
/// route that answers collects its parameters.
pub struct Router<'a, R = End> {
    mount: String,
    routes: R,
    _patterns: PhantomData<&'a str>,
}

/// No routes (the end of a router's list).
pub struct End;

/// One route, and the routes added before it.
pub struct Route<'a, H, R> {
    /// Its position in the order routes were added.
    index: usize,
    method: Method,
    pattern: &'a str,
    handler: H,
    earlier: R,
}

/// The answering handler's future, boxed: one allocation of its own size, where nesting
/// every route's future in the next would build (and move) one as big as all of them.
type Answer<'a> = Pin<Box<dyn Future<Output = Result<Response>> + 'a>>;

/// A router's routes: how it finds and calls the one that answers. Implemented by
/// [`End`] and [`Route`]; not for guests to implement.
#[doc(hidden)]
pub trait Routes<'a> {
    /// How many routes.
    fn count(&self) -> usize;
    /// The first route (in the order added) whose pattern matches `path` and that
    /// answers `method`; the methods of matching routes that do not are added to `allowed`.
    fn find(&self, method: &Method, path: &str, allowed: &mut Vec<String>)
    -> Option<(usize, &str)>;
    /// Calls route `index`.
    fn call(self, index: usize, req: Request, env: Env, params: Params) -> Answer<'a>;
}

impl<'a> Routes<'a> for End {
    fn count(&self) -> usize {
        0
    }

    fn find(&self, _: &Method, _: &str, _: &mut Vec<String>) -> Option<(usize, &str)> {
        None
    }

    fn call(self, _: usize, _: Request, _: Env, _: Params) -> Answer<'a> {
        Box::pin(async { Err(Error::not_found()) })
    }
}

impl<'a, H, F, R> Routes<'a> for Route<'a, H, R>
where
    H: FnOnce(Request, Env, Params) -> F,
    F: Future<Output = Result<Response>> + 'a,
    R: Routes<'a>,
{
    fn count(&self) -> usize {
        self.index + 1
    }

    fn find(
        &self,
        method: &Method,
        path: &str,
        allowed: &mut Vec<String>,
    ) -> Option<(usize, &str)> {
        if let Some(found) = self.earlier.find(method, path, allowed) {
            return Some(found);
        }
        if !pattern_matches(self.pattern, path, None) {
            return None;
        }
        if self.method == *method || (self.method == Method::GET && *method == Method::HEAD) {
            return Some((self.index, self.pattern));
        }
        if !allowed.iter().any(|m| m == self.method.as_str()) {
            allowed.push(self.method.as_str().to_string());
        }
        None
    }

    fn call(self, index: usize, req: Request, env: Env, params: Params) -> Answer<'a> {
        if index == self.index {
            Box::pin((self.handler)(req, env, params))
        } else {
            self.earlier.call(index, req, env, params)
        }
    }
}

/// The values a pattern's `:name` and `*name` segments matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub(crate) Vec<(String, String)>);

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

/// Panics on a pattern that cannot be right (a programmer error, found at once). One
/// pass over the bytes: this runs for every route of every request.
fn check_pattern(pattern: &str) {
    assert!(
        pattern.starts_with('/'),
        "route patterns start with `/`: `{pattern}`"
    );
    if let Some(star) = pattern.bytes().position(|b| b == b'*') {
        assert!(
            pattern.as_bytes()[star - 1] == b'/' && !pattern.as_bytes()[star..].contains(&b'/'),
            "`*` must start the last segment of `{pattern}`"
        );
    }
}

/// Whether `pattern` matches `path`; with `params`, also collects what it matched. A
/// `*name` takes the rest of the path as written (after one `/`), so a key like `/x` in
/// `/files//x` reaches the handler as it was sent. One pass over the bytes of both: this
/// runs for every route a request walks past.
pub(crate) fn pattern_matches(
    pattern: &str,
    path: &str,
    mut params: Option<&mut Vec<(String, String)>>,
) -> bool {
    let (p, q) = (pattern.as_bytes(), path.as_bytes());
    let (mut i, mut j) = (0, 0);
    loop {
        while i < p.len() && p[i] == b'/' {
            i += 1;
        }
        if i == p.len() {
            while j < q.len() && q[j] == b'/' {
                j += 1;
            }
            return j == q.len();
        }
        let segment_end = p[i..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(p.len(), |n| i + n);
        if p[i] == b'*' {
            if let Some(params) = params.as_mut() {
                let rest = &path[j..];
                let value = rest.strip_prefix('/').unwrap_or(rest);
                params.push((pattern[i + 1..segment_end].to_string(), value.to_string()));
            }
            return true;
        }
        while j < q.len() && q[j] == b'/' {
            j += 1;
        }
        if j == q.len() {
            return false;
        }
        let part_end = q[j..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(q.len(), |n| j + n);
        if p[i] == b':' {
            if let Some(params) = params.as_mut() {
                params.push((
                    pattern[i + 1..segment_end].to_string(),
                    path[j..part_end].to_string(),
                ));
            }
        } else if p[i..segment_end] != q[j..part_end] {
            return false;
        }
        i = segment_end;
        j = part_end;
    }
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
            routes: End,
            _patterns: PhantomData,
        }
    }
}

impl<'a, R: Routes<'a>> Router<'a, R> {
    /// Patterns are relative to `prefix`: the tenant's path route (say `/sql` from a
    /// `BASE_PATH` var), so the same guest works mounted anywhere.
    pub fn mount(mut self, prefix: impl Into<String>) -> Router<'a, R> {
        self.mount = prefix.into();
        self
    }

    /// Adds a route for `method`.
    pub fn on<H, F>(
        self,
        method: Method,
        pattern: &'a str,
        handler: H,
    ) -> Router<'a, Route<'a, H, R>>
    where
        H: FnOnce(Request, Env, Params) -> F,
        F: Future<Output = Result<Response>> + 'a,
    {
        check_pattern(pattern);
        Router {
            mount: self.mount,
            routes: Route {
                index: self.routes.count(),
                method,
                pattern,
                handler,
                earlier: self.routes,
            },
            _patterns: PhantomData,
        }
    }

    /// Adds a `GET` route (it answers `HEAD` too).
    pub fn get<H, F>(self, pattern: &'a str, handler: H) -> Router<'a, Route<'a, H, R>>
    where
        H: FnOnce(Request, Env, Params) -> F,
        F: Future<Output = Result<Response>> + 'a,
    {
        self.on(Method::GET, pattern, handler)
    }

    /// Adds a `POST` route.
    pub fn post<H, F>(self, pattern: &'a str, handler: H) -> Router<'a, Route<'a, H, R>>
    where
        H: FnOnce(Request, Env, Params) -> F,
        F: Future<Output = Result<Response>> + 'a,
    {
        self.on(Method::POST, pattern, handler)
    }

    /// Adds a `PUT` route.
    pub fn put<H, F>(self, pattern: &'a str, handler: H) -> Router<'a, Route<'a, H, R>>
    where
        H: FnOnce(Request, Env, Params) -> F,
        F: Future<Output = Result<Response>> + 'a,
    {
        self.on(Method::PUT, pattern, handler)
    }

    /// Adds a `PATCH` route.
    pub fn patch<H, F>(self, pattern: &'a str, handler: H) -> Router<'a, Route<'a, H, R>>
    where
        H: FnOnce(Request, Env, Params) -> F,
        F: Future<Output = Result<Response>> + 'a,
    {
        self.on(Method::PATCH, pattern, handler)
    }

    /// Adds a `DELETE` route.
    pub fn delete<H, F>(self, pattern: &'a str, handler: H) -> Router<'a, Route<'a, H, R>>
    where
        H: FnOnce(Request, Env, Params) -> F,
        F: Future<Output = Result<Response>> + 'a,
    {
        self.on(Method::DELETE, pattern, handler)
    }

    /// Answers `req` with the first route that matches it.
    pub async fn run(self, req: Request, env: Env) -> Result<Response> {
        let found = self.find(req.method(), req.path_after(&self.mount));
        match found {
            Found::Route(index, params) => self.routes.call(index, req, env, params).await,
            Found::OtherMethods(allowed) => Ok(Response::text("method not allowed")
                .with_status(405)
                .with_header("allow", allowed.join(", "))),
            Found::Nothing => Err(Error::not_found()),
        }
    }

    fn find(&self, method: &Method, path: &str) -> Found {
        let mut allowed = Vec::new();
        match self.routes.find(method, path, &mut allowed) {
            Some((index, pattern)) => {
                let mut params = Vec::new();
                pattern_matches(pattern, path, Some(&mut params));
                Found::Route(index, Params(params))
            }
            None if allowed.is_empty() => Found::Nothing,
            None => Found::OtherMethods(allowed),
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
        assert_eq!(
            matched("/files/*key", "/files//lead"),
            Some(vec![("key".into(), "/lead".into())])
        );
    }

    #[test]
    #[should_panic(expected = "must start the last segment")]
    fn a_rest_segment_in_the_middle_is_a_programmer_error() {
        check_pattern("/files/*key/meta");
    }

    fn router() -> Router<'static, impl Routes<'static>> {
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
