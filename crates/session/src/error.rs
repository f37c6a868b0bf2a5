use std::fmt;

/// A setting of the session layer was rejected when the layer was built.
///
/// Nonsense is refused up front, naming the setting, so that it never surfaces as a strange
/// error at request time.
///
/// ```
/// use std::time::Duration;
/// use towline_session::SessionLayer;
///
/// let err = SessionLayer::builder().max_wait(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.setting(), "max_wait");
/// assert!(err.to_string().contains("max_wait"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    setting: &'static str,
    reason: &'static str,
}

impl ConfigError {
    pub(crate) const fn new(setting: &'static str, reason: &'static str) -> Self {
        ConfigError { setting, reason }
    }

    /// The name of the builder method whose value was rejected.
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// Why it was rejected.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid session setting `{}`: {}",
            self.setting, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}
