/// A setting of [`TraceBuilder`](crate::TraceBuilder) that makes no sense, found when the
/// layer is built.
///
/// ```
/// use towline_trace::{ConfigError, TraceLayer};
///
/// let err = TraceLayer::builder().provider_name("").build().unwrap_err();
/// assert!(matches!(err, ConfigError::ProviderName { .. }));
/// assert!(err.to_string().contains("provider_name"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `provider_name` must be 1 to 64 characters of `a-z`, `0-9`, `.`, `_` or `-`, as the
    /// GenAI conventions' values are.
    #[error("provider_name `{name}`: expected 1 to 64 characters of a-z, 0-9, '.', '_' or '-'")]
    ProviderName {
        /// The rejected name.
        name: String,
    },
    /// `body_peek_limit` is larger than the most towline will scan of a request body.
    #[error("body_peek_limit {limit}: at most {max} bytes")]
    BodyPeekLimit {
        /// The rejected limit.
        limit: usize,
        /// The largest limit accepted.
        max: usize,
    },
    /// `keep_query_value` was given an empty or malformed parameter name.
    #[error("keep_query_value `{name}`: not a query parameter name")]
    QueryParamName {
        /// The rejected name.
        name: String,
    },
    /// `keep_query_value` was given a parameter that carries credentials (`key`, `api-key`,
    /// `token`, `sig`, ...): its value is always redacted.
    #[error("keep_query_value `{name}`: this parameter carries credentials and is always redacted")]
    CredentialQueryParam {
        /// The rejected name.
        name: String,
    },
}
