//! Reading and writing configuration text: TOML and YAML, with path-qualified errors.

use std::path::Path;

use super::compile::compile;
use super::error::{ConfigError, ConfigErrorKind};
use super::model::Config;

/// The largest configuration text read (a guard against runaway input).
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// The deepest nesting of `[`/`{` accepted (parsers recurse on it).
const MAX_NESTING: usize = 64;

fn guard(text: &str) -> Result<(), ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::new(
            ConfigErrorKind::Syntax,
            "",
            format_args!("the configuration is larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    // A rough count that ignores quoting: it errs on the side of refusing.
    let (mut depth, mut max) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if max > MAX_NESTING {
        return Err(ConfigError::new(
            ConfigErrorKind::Syntax,
            "",
            format_args!("brackets nested more than {MAX_NESTING} deep"),
        ));
    }
    Ok(())
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    })
}

/// The parser's message without the path and location it adds (kept apart here).
fn yaml_message(e: &serde_norway::Error) -> String {
    let mut message = e.to_string();
    if let Some(at) = message.find(" at line ") {
        message.truncate(at);
    }
    if let Some((head, rest)) = message.split_once(": ") {
        if !head.contains(char::is_whitespace) && !rest.is_empty() {
            message = rest.to_owned();
        }
    }
    message
}

fn path_of(p: &serde_path_to_error::Path) -> String {
    let s = p.to_string();
    if s == "." { String::new() } else { s }
}

impl Config {
    /// Reads a configuration from TOML text. Unknown fields, wrong types and bad durations
    /// are refused with the path of the value; syntax errors with their line and column.
    /// The values are not checked against each other yet: see [`Config::validate`] (which
    /// [`Config::build`] and [`Runtime::reload`](super::Runtime::reload) call).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        guard(text)?;
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ConfigError::new(ConfigErrorKind::Syntax, "", e.message())
                .at(e.span().map(|s| line_column(text, s.start)))
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = path_of(e.path());
            let inner = e.into_inner();
            ConfigError::new(ConfigErrorKind::Invalid, path, inner.message())
                .at(inner.span().map(|s| line_column(text, s.start)))
        })
    }

    /// Reads a configuration from YAML text (one document); see
    /// [`from_toml_str`](Self::from_toml_str).
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        guard(text)?;
        if blank(text) {
            return Ok(Config::default());
        }
        // Syntax first, so that a syntax error is reported as one (without a path).
        if let Err(e) = serde_norway::from_str::<serde_norway::Value>(text) {
            let location = e.location().map(|l| (l.line(), l.column()));
            return Err(
                ConfigError::new(ConfigErrorKind::Syntax, "", yaml_message(&e)).at(location),
            );
        }
        let de = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = path_of(e.path());
            let inner = e.into_inner();
            let location = inner.location().map(|l| (l.line(), l.column()));
            ConfigError::new(ConfigErrorKind::Invalid, path, yaml_message(&inner)).at(location)
        })
    }

    /// Reads a configuration file: TOML for `.toml`, YAML for `.yaml` and `.yml`.
    ///
    /// ```no_run
    /// use tower_lb::config::Config;
    ///
    /// let config = Config::from_path("examples/config/seed_api.yaml")?;
    /// config.validate()?;
    /// # Ok::<(), tower_lb::config::ConfigError>(())
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let parse: fn(&str) -> Result<Config, ConfigError> = match ext.as_deref() {
            Some("toml") => Config::from_toml_str,
            Some("yaml" | "yml") => Config::from_yaml_str,
            _ => {
                return Err(ConfigError::new(
                    ConfigErrorKind::Format,
                    "",
                    format_args!(
                        "`{}`: use a `.toml`, `.yaml` or `.yml` file",
                        path.display()
                    ),
                ));
            }
        };
        let meta = std::fs::metadata(path).map_err(|e| {
            ConfigError::new(
                ConfigErrorKind::Io,
                "",
                format_args!("`{}`: {e}", path.display()),
            )
        })?;
        if meta.len() > MAX_CONFIG_BYTES as u64 {
            return Err(ConfigError::new(
                ConfigErrorKind::Io,
                "",
                format_args!(
                    "`{}` is larger than {MAX_CONFIG_BYTES} bytes",
                    path.display()
                ),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                ConfigErrorKind::Io,
                "",
                format_args!("`{}`: {e}", path.display()),
            )
        })?;
        parse(&text)
    }

    /// Reads and checks: [`from_toml_str`](Self::from_toml_str) then
    /// [`validate`](Self::validate).
    pub fn load_toml(text: &str) -> Result<Config, ConfigError> {
        let c = Config::from_toml_str(text)?;
        c.validate()?;
        Ok(c)
    }

    /// Reads and checks: [`from_yaml_str`](Self::from_yaml_str) then
    /// [`validate`](Self::validate).
    pub fn load_yaml(text: &str) -> Result<Config, ConfigError> {
        let c = Config::from_yaml_str(text)?;
        c.validate()?;
        Ok(c)
    }

    /// Checks every value and how they fit together (targets named by rules exist, pools are
    /// known, weights, addresses, thresholds and durations are in range) without building
    /// anything; the error names the path of the first value at fault.
    ///
    /// ```
    /// use tower_lb::config::Config;
    ///
    /// let config = Config::from_yaml_str(r#"
    /// load_balancers:
    ///   - name: api
    ///     targets: [{ id: a, address: "127.0.0.1:8080" }]
    ///     rules:
    ///       - { name: v2, path: /v2/*, targets: [b] }
    /// "#)?;
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.path(), "load_balancers[0].rules[0].targets[0]");
    /// # Ok::<(), tower_lb::config::ConfigError>(())
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        compile(self).map(|_| ())
    }

    /// Writes the configuration as TOML (it reads back equal).
    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::new(ConfigErrorKind::Invalid, "", e))
    }

    /// Writes the configuration as YAML (it reads back equal).
    ///
    /// ```
    /// use tower_lb::config::Config;
    ///
    /// let config = Config::from_toml_str("[[load_balancers]]\nname = \"api\"\ntimeout = \"1500ms\"\n")?;
    /// let yaml = config.to_yaml_string()?;
    /// assert!(yaml.contains("timeout: 1s 500ms"));
    /// assert_eq!(Config::from_yaml_str(&yaml)?, config);
    /// # Ok::<(), tower_lb::config::ConfigError>(())
    /// ```
    pub fn to_yaml_string(&self) -> Result<String, ConfigError> {
        serde_norway::to_string(self).map_err(|e| ConfigError::new(ConfigErrorKind::Invalid, "", e))
    }
}
