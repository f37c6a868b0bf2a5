use std::fmt;

/// A breaker setting that makes no sense, reported by [`BreakerBuilder::build`](crate::BreakerBuilder::build).
///
/// ```
/// use towline_breaker::BreakerLayer;
///
/// let err = BreakerLayer::builder().failure_ratio(1.5).build().unwrap_err();
/// assert_eq!(err.setting(), "failure_ratio");
/// assert!(err.to_string().contains("failure_ratio"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    setting: &'static str,
    problem: String,
}

impl ConfigError {
    pub(crate) fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            setting,
            problem: problem.into(),
        }
    }

    /// The name of the builder method whose value was rejected.
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid circuit breaker setting `{}`: {}",
            self.setting, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}
