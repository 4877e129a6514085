//! `route!`: the router's patterns without building a router, for hot paths. The
//! macro is exported at the crate root (`outpost_sdk::route!`); the functions here are
//! what its expansion calls.

use crate::router::{Params, pattern_matches};
use crate::{Error, Method, Response, Result};

/// Routes a request by method and path pattern without building a [`Router`]: the arms
/// expand to a chain of checks around their bodies, as a hand-written `match` would, so
/// a guest on the hot path pays nothing for routing (no handler boxes, no futures of
/// their own; the bodies may use `req` and `env` as any code in the handler does).
///
/// ```ignore
/// outpost_sdk::route!(req, mount = env.var("BASE_PATH").unwrap_or_default(), {
///     GET "/todos" => |_| list(&db).await,
///     GET "/todos/:id" => |params| show(&db, params.number("id")?).await,
///     DELETE "/todos/:id" => |params| remove(&db, params.number("id")?).await,
/// })
/// ```
///
/// Patterns, `HEAD` for `GET` routes, 404 and 405 with `Allow` are as for [`Router`].
#[macro_export]
macro_rules! route {
    ($req:ident, mount = $mount:expr, { $($method:ident $pattern:literal => |$params:pat_param| $body:expr),* $(,)? }) => {{
        let __mount: ::std::string::String = $mount;
        // Borrowed only while the arms are checked: the answering body may move `req`.
        let __method = $req.method();
        let __path = $req.path_after(&__mount);
        let mut __allowed: ::std::vec::Vec<&'static str> = ::std::vec::Vec::new();
        '__routes: {
            $(
                if let ::std::option::Option::Some(__params) = $crate::route::__route_matches(
                    __method, __path, stringify!($method), $pattern, &mut __allowed,
                ) {
                    let $params = __params;
                    break '__routes $body;
                }
            )*
            $crate::route::__no_route(&__allowed)
        }
    }};
}

/// For [`route!`]: the params when `pattern` matches `path` and the route answers
/// `method`; a matching route for another method goes into `allowed`.
#[doc(hidden)]
pub fn __route_matches(
    method: &Method,
    path: &str,
    route_method: &'static str,
    pattern: &str,
    allowed: &mut Vec<&'static str>,
) -> Option<Params> {
    if !pattern_matches(pattern, path, None) {
        return None;
    }
    let asked = method.as_str();
    if asked == route_method || (route_method == "GET" && asked == "HEAD") {
        let mut params = Vec::new();
        pattern_matches(pattern, path, Some(&mut params));
        return Some(Params(params));
    }
    if !allowed.contains(&route_method) {
        allowed.push(route_method);
    }
    None
}

/// For [`route!`]: 405 with `Allow` when the path matched other methods, else 404.
#[doc(hidden)]
pub fn __no_route(allowed: &[&str]) -> Result<Response> {
    if allowed.is_empty() {
        Err(Error::not_found())
    } else {
        Ok(Response::text("method not allowed")
            .with_status(405)
            .with_header("allow", allowed.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Method, Request, Response, Result};

    fn dispatch(req: Request) -> Result<Response> {
        crate::route!(req, mount = "/api".to_string(), {
            GET "/todos" => |_| Ok(Response::text("list")),
            POST "/todos" => |_| Ok(Response::text(format!("create via {}", req.path()))),
            GET "/todos/:id" => |params| Ok(Response::text(format!("show {}", params.number("id")?))),
            GET "/files/*key" => |params| Ok(Response::text(params.get("key").unwrap_or_default().to_string())),
        })
    }

    fn routed(method: Method, url: &str) -> (u16, String) {
        let answer = dispatch(Request::new(method, url).expect("request"));
        match answer {
            Ok(response) => {
                let allow = response.header("allow").unwrap_or_default().to_string();
                (response.status(), allow)
            }
            Err(error) => (error.status(), error.message().to_string()),
        }
    }

    #[test]
    fn the_route_macro_dispatches_like_the_router() {
        assert_eq!(routed(Method::GET, "http://x/api/todos").0, 200);
        assert_eq!(routed(Method::HEAD, "http://x/api/todos").0, 200);
        assert_eq!(routed(Method::POST, "http://x/api/todos").0, 200);
        assert_eq!(routed(Method::GET, "http://x/api/todos/7").0, 200);
        assert_eq!(routed(Method::GET, "http://x/api/todos/x").0, 400);
        assert_eq!(routed(Method::GET, "http://x/api/files//lead").0, 200);
        assert_eq!(
            routed(Method::DELETE, "http://x/api/todos"),
            (405, "GET, POST".to_string())
        );
        assert_eq!(routed(Method::GET, "http://x/api/nothing").0, 404);
    }
}
