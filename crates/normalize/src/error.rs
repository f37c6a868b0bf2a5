use std::fmt;

/// A setting of [`NormalizeLayer::builder`](crate::NormalizeLayer::builder) was out of range.
/// Returned when the layer is built, never at request time.
///
/// ```
/// let err = towline_normalize::NormalizeLayer::builder()
///     .error_body_limit(0)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.setting(), "error_body_limit");
/// assert!(err.to_string().contains("error_body_limit"));
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
            "invalid Normalize setting `{}`: {}",
            self.setting, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}
