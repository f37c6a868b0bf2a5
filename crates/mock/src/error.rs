use std::fmt;

/// A fault script (or a server option) that cannot be used, with the field at fault.
///
/// `field` is the path of the offending setting as the script file spells it
/// (`scripts[1].faults[0].p`, `default.latency_ms`, `record_headers`); it is empty only for a
/// file that is not JSON/TOML at all. The message never contains an API key: scripts are named
/// by their position, not by the key they select.
///
/// ```
/// use towline_mock::Scenario;
///
/// let err = Scenario::from_json_str(r#"{"default": {"faults": [{"class": "server", "p": 1.5}]}}"#)
///     .unwrap_err();
/// assert_eq!(err.field(), "default.faults[0].p");
/// assert_eq!(err.to_string(), "`default.faults[0].p`: must be a probability within [0, 1], got 1.5");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    field: String,
    message: String,
}

impl ScriptError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ScriptError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The path of the offending field, e.g. `scripts[0].faults[2].latency_ms`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ScriptError {}

/// Why a mock server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The scenario or a server option is invalid.
    #[error("invalid mock scenario: {0}")]
    Invalid(#[from] ScriptError),
    /// The loopback address could not be bound (port in use, ...).
    #[error("cannot bind the mock server to 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port asked for (0: any).
        port: u16,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}
