//! TOML → validated config: any text is a config or errors that say where.

use std::path::Path;

use outpost_config::{Config, Route};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count() + 1;
    match Config::parse(text, Path::new("fuzz.toml")) {
        Ok(config) => {
            // A route the config accepted reads back the same from how it is shown.
            for tenant in &config.tenants {
                for route in &tenant.routes {
                    let shown = route.to_string();
                    let again = Route::parse(&shown)
                        .unwrap_or_else(|e| panic!("route `{shown}` does not parse again: {e}"));
                    assert_eq!(&again, route, "route `{shown}` reads back different");
                }
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a refused config names a problem");
            for error in &errors.0 {
                assert!(!error.message.is_empty(), "{error:?} says nothing");
                assert!(
                    error.location.line <= lines,
                    "{error:?} points past the end of the text ({lines} lines)"
                );
            }
        }
    }
}
