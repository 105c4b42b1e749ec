//! The one error of configuration: what is wrong, and where.

use std::fmt;

/// What kind of problem a [`ConfigError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read (or watched).
    Io,
    /// The text is not valid TOML or YAML.
    Syntax,
    /// A field is unknown, has the wrong type, or a value is out of range or refers to
    /// something that does not exist.
    Invalid,
    /// The file's extension names no format this crate reads (`.toml`, `.yaml`, `.yml`).
    Format,
}

/// A configuration that was refused, with the path of the offending value
/// (`load_balancers[1].rules[0].path`) and, for syntax errors, the line and column.
/// Nothing was changed by a refused configuration.
///
/// # Examples
///
/// ```
/// use tower_lb::config::{Config, ConfigErrorKind};
///
/// let err = Config::from_yaml_str("load_balancers:\n  - name: a\n    targets:\n      - { id: x, address: '127.0.0.1:1', weight: 0 }\n")
///     .and_then(|c| c.validate().map(|_| c))
///     .unwrap_err();
/// assert_eq!(err.kind(), ConfigErrorKind::Invalid);
/// assert_eq!(err.path(), "load_balancers[0].targets[0].weight");
/// assert!(err.to_string().starts_with("load_balancers[0].targets[0].weight: "));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    path: String,
    message: String,
    location: Option<(usize, usize)>,
}

impl ConfigError {
    pub(crate) fn new(
        kind: ConfigErrorKind,
        path: impl Into<String>,
        message: impl fmt::Display,
    ) -> Self {
        // Messages may quote input; keep them short.
        let mut message = message.to_string();
        if message.len() > 512 {
            let mut end = 512;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        ConfigError {
            kind,
            path: path.into(),
            message,
            location: None,
        }
    }

    pub(crate) fn invalid(path: impl Into<String>, message: impl fmt::Display) -> Self {
        ConfigError::new(ConfigErrorKind::Invalid, path, message)
    }

    pub(crate) fn at(mut self, location: Option<(usize, usize)>) -> Self {
        self.location = location;
        self
    }

    /// What kind of problem it is.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The path of the offending value, such as `load_balancers[1].rules[0].path`; empty
    /// when the problem is the whole document (a syntax error before any key, an unreadable
    /// file).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The line and column (both from 1) where the parser stopped, when it says.
    pub fn location(&self) -> Option<(usize, usize)> {
        self.location
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        if let Some((line, column)) = self.location {
            write!(f, "line {line} column {column}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}
