//! The router: any routes, any host and path.

use arbitrary::{Arbitrary, Unstructured};
use outpost_config::Route;
use outpost_server::Router;

#[derive(Arbitrary, Debug)]
struct Input {
    routes: Vec<Vec<String>>,
    host: String,
    path: String,
}

pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let tenants: Vec<Vec<Route>> = input
        .routes
        .iter()
        .take(16)
        .map(|routes| routes.iter().filter_map(|r| Route::parse(r).ok()).collect())
        .collect();
    let router = Router::new(
        tenants
            .iter()
            .enumerate()
            .map(|(index, routes)| (index, routes.as_slice())),
    );
    let chosen = router.route(&input.host, &input.path);
    if let Some(index) = chosen {
        assert!(
            index < tenants.len(),
            "routed to tenant {index} of {}",
            tenants.len()
        );
    }
    // A tenant mounted exactly at the request's path always gets some tenant's answer.
    let mounted_here = tenants
        .iter()
        .flatten()
        .any(|route| route.to_string() == input.path && input.path.starts_with('/'));
    if mounted_here {
        assert!(
            chosen.is_some(),
            "nothing served `{}` though a route names it",
            input.path
        );
    }
}
