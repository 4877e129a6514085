//! Errors that point at the config file: file, line, tenant and key.

use std::fmt;
use std::path::PathBuf;

/// Where in a config file something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem has no single line (a missing section).
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
}

impl Location {
    pub(crate) fn at_offset(file: &std::path::Path, source: &str, offset: usize) -> Location {
        let before = &source[..offset.min(source.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        Location {
            file: file.to_path_buf(),
            line,
            column,
        }
    }

    pub(crate) fn file_only(file: &std::path::Path) -> Location {
        Location {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        Ok(())
    }
}

/// One problem in a config: where it is, which tenant and key, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where the offending text is.
    pub location: Location,
    /// The tenant the problem belongs to, if any.
    pub tenant: Option<String>,
    /// The key, dotted from the tenant or section (`limits.memory`, `server.listen`).
    pub key: Option<String>,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl ConfigError {
    /// A problem at `location`.
    pub fn new(location: Location, message: impl Into<String>) -> ConfigError {
        ConfigError {
            location,
            tenant: None,
            key: None,
            message: message.into(),
        }
    }

    /// Names the tenant the problem belongs to.
    pub fn tenant(mut self, tenant: impl Into<String>) -> ConfigError {
        self.tenant = Some(tenant.into());
        self
    }

    /// Names the key that is wrong.
    pub fn key(mut self, key: impl Into<String>) -> ConfigError {
        self.key = Some(key.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if let Some(tenant) = &self.tenant {
            write!(f, "tenant `{tenant}`: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a config, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "{count} problem{} in the config:",
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}
