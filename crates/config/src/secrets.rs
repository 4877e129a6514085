//! `secrets = { NAME = { env = "HOST_VAR" } | { file = "path" } }`: values a guest reads
//! like vars, which the config never holds in plain text and nothing prints.

use std::fmt;

/// A secret's value. Its `Debug` and `Display` print a placeholder, so a config dumped
/// into a log or an error shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value itself, for the guest's environment only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

use std::collections::BTreeMap;

use toml::Spanned;

use crate::{ConfigError, is_env_name};

impl crate::Validator<'_> {
    /// `secrets = { NAME = { env = "VAR" } | { file = "path" } }`, read now. An error
    /// names the variable or file, never a value.
    pub(crate) fn secrets(
        &self,
        raw: BTreeMap<String, Spanned<toml::Value>>,
        vars: &BTreeMap<String, String>,
        errors: &mut Vec<ConfigError>,
    ) -> BTreeMap<String, Secret> {
        let mut secrets = BTreeMap::new();
        for (name, value) in raw {
            let key = format!("secrets.{name}");
            if !is_env_name(&name) {
                errors.push(self.error(
                    &value,
                    &key,
                    "a secret's name is letters, digits and `_`, not starting with a digit",
                ));
                continue;
            }
            if vars.contains_key(&name) {
                errors.push(self.error(
                    &value,
                    &key,
                    format!("`{name}` is also a var; a name is a var or a secret"),
                ));
                continue;
            }
            let table = value.get_ref().as_table();
            let source = table.filter(|t| t.len() == 1).and_then(|t| t.iter().next());
            let read = match source {
                Some((kind, toml::Value::String(var))) if kind == "env" => std::env::var(var)
                    .map_err(|_| format!("environment variable `{var}` is not set; set it in outpost's environment")),
                Some((kind, toml::Value::String(file))) if kind == "file" => {
                    let path = self.resolve(file);
                    std::fs::read_to_string(&path)
                        .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))
                }
                _ => Err("a secret is { env = \"VAR\" } or { file = \"path\" }".into()),
            };
            match read {
                Ok(text) => {
                    secrets.insert(name, Secret::new(text));
                }
                Err(message) => errors.push(self.error(&value, &key, message)),
            }
        }
        secrets
    }
}
