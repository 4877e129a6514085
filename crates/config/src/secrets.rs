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
