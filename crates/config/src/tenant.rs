//! `[[tenant]]`: one tenant's component, routes, vars, limits, stores and outbound origins.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use toml::Spanned;

use crate::raw::RawTenant;
use crate::{
    AssetsConfig, CacheConfig, CertificateFiles, Limits, Location, ObjectClass, Origin, Route,
    Secret, Stores, Validator, is_env_name,
};

/// One tenant: a component, the routes it answers, and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// Unique on the node; lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// The `wasi:http` component, resolved against the config file's directory.
    pub component: PathBuf,
    /// Where `component` is written, for errors about the component itself.
    pub component_at: Location,
    /// At least one route.
    pub routes: Vec<Route>,
    /// Plain variables, given to the guest as environment variables.
    pub vars: BTreeMap<String, String>,
    /// Per-request limits.
    pub limits: Limits,
    /// Reuse an instance for several requests (sequentially) instead of a fresh one each.
    pub reuse: bool,
    /// The stores its guest may open.
    pub stores: Stores,
    /// The origins its guest may call (`outbound`); none by default.
    pub outbound: Vec<Origin>,
    /// Values the guest reads like vars, from the node's environment or files.
    pub secrets: BTreeMap<String, Secret>,
    /// Its own certificate for its host routes on the TLS listener (`tls`), chosen by SNI.
    pub tls: Option<CertificateFiles>,
    /// Static files served before the guest runs (`assets`).
    pub assets: Option<AssetsConfig>,
    /// The HTTP cache in front of its guest (`cache`).
    pub cache: CacheConfig,
    /// Its Durable Object classes, by binding name (`durable_objects`).
    pub durable_objects: BTreeMap<String, ObjectClass>,
}

impl Validator<'_> {
    /// Validates one tenant; `None` if anything about it is wrong (the errors say what).
    pub(crate) fn tenant(
        &mut self,
        raw: RawTenant,
        claimed: &mut HashMap<Route, String>,
    ) -> Option<TenantConfig> {
        let before = self.errors.len();
        let name = raw.name.get_ref().clone();
        let mut errors = Vec::new();
        if !is_name(&name) {
            errors.push(self.error(&raw.name, "name", "use lowercase letters, digits, `-` and `_`, starting with a letter or digit (at most 63)"));
        }
        if raw.component.get_ref().trim().is_empty() {
            errors.push(self.error(
                &raw.component,
                "component",
                "give the path of the tenant's .wasm component",
            ));
        }
        let component = self.resolve(raw.component.get_ref());
        let component_at = self.at(raw.component.span());

        let mut routes = Vec::new();
        if raw.routes.get_ref().is_empty() {
            errors.push(self.error(
                &raw.routes,
                "routes",
                "a tenant needs at least one route, e.g. [\"example.com\"] or [\"/app\"]",
            ));
        }
        for text in raw.routes.get_ref() {
            match Route::parse(text.get_ref()) {
                Ok(route) => {
                    if routes.contains(&route) {
                        errors.push(self.error(
                            text,
                            "routes",
                            format!("route `{route}` is listed twice"),
                        ));
                    } else if let Some(owner) = claimed.get(&route).filter(|owner| **owner != name)
                    {
                        errors.push(self.error(text, "routes", format!(
                            "route `{route}` is already claimed by tenant `{owner}`; each route belongs to one tenant"
                        )));
                    } else {
                        claimed.insert(route.clone(), name.clone());
                        routes.push(route);
                    }
                }
                Err(message) => errors.push(self.error(text, "routes", message)),
            }
        }

        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in raw.vars {
            let text = match value.get_ref() {
                toml::Value::String(s) => Some(s.clone()),
                toml::Value::Integer(i) => Some(i.to_string()),
                toml::Value::Float(f) => Some(f.to_string()),
                toml::Value::Boolean(b) => Some(b.to_string()),
                _ => None,
            };
            let var_key = format!("vars.{key}");
            if !is_env_name(&key) {
                errors.push(self.error(
                    &value,
                    &var_key,
                    "a variable name is letters, digits and `_`, not starting with a digit",
                ));
            }
            match text {
                Some(text) => {
                    vars.insert(key, text);
                }
                None => errors.push(self.error(
                    &value,
                    &var_key,
                    "a variable is a string, number or boolean",
                )),
            }
        }

        let limits = match raw.limits {
            Some(limits) => self.limits(limits.into_inner(), &mut errors),
            None => Limits::default(),
        };
        let reuse = raw.reuse.is_some_and(Spanned::into_inner);
        let stores = Stores {
            kv: self.kv_bindings(raw.kv, &mut errors),
            sql: self.binding_names(raw.sql, "sql", &mut errors),
            blob: self.blob_stores(&name, raw.blob, &mut errors),
        };
        let secrets = self.secrets(raw.secrets, &vars, &mut errors);
        let tls = raw.tls.map(|tls| self.certificate(tls));
        let assets = self.assets(raw.assets, &mut errors);
        let cache = self.cache(raw.cache, &mut errors);
        let durable_objects = self.object_classes(raw.durable_objects, &mut errors);
        let mut outbound: Vec<Origin> = Vec::new();
        for origin in raw.outbound.map(Spanned::into_inner).unwrap_or_default() {
            match Origin::parse(origin.get_ref()) {
                Ok(parsed) if outbound.contains(&parsed) => errors.push(self.error(
                    &origin,
                    "outbound",
                    format!("`{}` is listed twice", origin.get_ref()),
                )),
                Ok(parsed) => outbound.push(parsed),
                Err(message) => errors.push(self.error(&origin, "outbound", message)),
            }
        }

        for error in errors {
            self.errors.push(error.tenant(&name));
        }
        (self.errors.len() == before).then_some(TenantConfig {
            name,
            component,
            component_at,
            routes,
            vars,
            limits,
            reuse,
            stores,
            outbound,
            secrets,
            tls,
            assets,
            cache,
            durable_objects,
        })
    }
}

/// Tenant and node names end up in paths and metric labels: keep them plain.
pub(crate) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}
