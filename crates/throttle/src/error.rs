use std::borrow::Cow;

/// A throttle setting was rejected when the layer was built. Names the setting; never
/// contains a key.
///
/// ```
/// use towline_throttle::ThrottleLayer;
///
/// let err = ThrottleLayer::builder().rate(10.0).burst(0).build().unwrap_err();
/// assert_eq!(err.setting(), "burst");
/// assert_eq!(err.to_string(), "invalid throttle setting `burst`: must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid throttle setting `{setting}`: {reason}")]
pub struct ConfigError {
    setting: &'static str,
    reason: Cow<'static, str>,
}

impl ConfigError {
    pub(crate) fn new(setting: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            setting,
            reason: reason.into(),
        }
    }

    /// The setting at fault, as named by its builder method (`rate`, `burst`,
    /// `adaptive.floor`, ...).
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}
