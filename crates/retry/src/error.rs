/// A setting of the retry or timeout layer was rejected when the layer was built.
///
/// It names the setting (the builder method that set it) and says what is wrong, so that a
/// bad `--retry-budget 1.5` fails at start-up with a clear message instead of misbehaving under
/// load.
///
/// ```
/// use towline_retry::RetryLayer;
///
/// let err = RetryLayer::builder().budget_ratio(1.5).build().unwrap_err();
/// assert_eq!(err.setting(), "budget_ratio");
/// assert!(err.to_string().contains("budget_ratio"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{setting}`: {reason}")]
pub struct ConfigError {
    setting: &'static str,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            setting,
            reason: reason.into(),
        }
    }

    /// The name of the rejected setting, as the builder method that sets it.
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}
