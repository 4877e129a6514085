//! `durable_objects = { ROOMS = { class = "Room" } }` on a tenant: the Durable Object
//! classes its component implements, each reachable from its guests by a binding name.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::stores::is_binding_name;
use crate::{ConfigError, Validator, parse_duration};

/// How long a live object with no event is kept in memory (workerd's 10 s).
pub const DEFAULT_OBJECT_IDLE: Duration = Duration::from_secs(10);

/// One Durable Object class of a tenant, bound to a name its guests open it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectClass {
    /// The class: the name of the object type (`#[outpost_sdk::durable_object] struct Room`);
    /// part of every object's address, so renaming it orphans the class's objects.
    pub class: String,
    /// After this long without an event a live object is dropped from memory; the next
    /// event constructs it again from its storage.
    pub idle_timeout: Duration,
    /// WebSockets one object may hold open.
    pub max_sockets: u32,
    /// Bytes of one WebSocket message, either way.
    pub max_message: u64,
}

/// WebSockets per object when a class sets none.
pub const DEFAULT_MAX_SOCKETS: u32 = 1_000;
/// The largest `max_sockets`.
pub const MAX_SOCKETS_PER_OBJECT: u32 = 32_768;
/// A WebSocket message's size when a class sets none (Workers': 1 MiB).
pub const DEFAULT_MAX_MESSAGE: u64 = 1 << 20;
/// The largest `max_message`.
pub const MAX_MESSAGE_BYTES: u64 = 16 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawObjectClass {
    pub class: Spanned<String>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_sockets: Option<Spanned<u32>>,
    pub max_message: Option<Spanned<crate::raw::SizeValue>>,
}

impl Validator<'_> {
    /// The tenant's `durable_objects` bindings, by binding name.
    pub(crate) fn object_classes(
        &self,
        raw: BTreeMap<String, Spanned<RawObjectClass>>,
        errors: &mut Vec<ConfigError>,
    ) -> BTreeMap<String, ObjectClass> {
        let mut classes = BTreeMap::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (binding, raw) in raw {
            let key = format!("durable_objects.{binding}");
            if !is_binding_name(&binding) {
                errors.push(self.error(&raw, &key, "a binding name is letters, digits and `_`, starting with a letter or `_` (at most 63)"));
                continue;
            }
            let raw = raw.into_inner();
            let class = raw.class.get_ref().clone();
            // The guest's type name (Workers' `class_name`); it names a directory too.
            if !is_binding_name(&class) {
                errors.push(self.error(
                    &raw.class,
                    &format!("{key}.class"),
                    "a class name is letters, digits and `_`, starting with a letter or `_` (at most 63): the object type's name, e.g. \"Counter\"",
                ));
                continue;
            }
            // Case apart only, two classes would share a directory on some filesystems.
            if let Some(other) = seen.insert(class.to_ascii_lowercase(), binding.clone()) {
                errors.push(self.error(
                    &raw.class,
                    &format!("{key}.class"),
                    format!("class `{class}` is already bound as `{other}`; bind each class once"),
                ));
                continue;
            }
            let mut idle_timeout = DEFAULT_OBJECT_IDLE;
            if let Some(value) = raw.idle_timeout {
                match parse_duration(value.get_ref()) {
                    Ok(d) if d.is_zero() => errors.push(self.error(
                        &value,
                        &format!("{key}.idle_timeout"),
                        "must be above 0",
                    )),
                    Ok(d) => idle_timeout = d,
                    Err(message) => {
                        errors.push(self.error(&value, &format!("{key}.idle_timeout"), message))
                    }
                }
            }
            let mut max_sockets = DEFAULT_MAX_SOCKETS;
            if let Some(value) = raw.max_sockets {
                if (1..=MAX_SOCKETS_PER_OBJECT).contains(value.get_ref()) {
                    max_sockets = value.into_inner();
                } else {
                    errors.push(self.error(
                        &value,
                        &format!("{key}.max_sockets"),
                        format!("must be between 1 and {MAX_SOCKETS_PER_OBJECT}"),
                    ));
                }
            }
            let mut max_message = DEFAULT_MAX_MESSAGE;
            if let Some(value) = raw.max_message {
                match crate::limits::size(value.get_ref()) {
                    Ok(bytes) if (1..=MAX_MESSAGE_BYTES).contains(&bytes) => max_message = bytes,
                    Ok(_) => errors.push(self.error(
                        &value,
                        &format!("{key}.max_message"),
                        "must be between 1 byte and 16MiB",
                    )),
                    Err(message) => {
                        errors.push(self.error(&value, &format!("{key}.max_message"), message))
                    }
                }
            }
            classes.insert(
                binding,
                ObjectClass {
                    class,
                    idle_timeout,
                    max_sockets,
                    max_message,
                },
            );
        }
        classes
    }
}
