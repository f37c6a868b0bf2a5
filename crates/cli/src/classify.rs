//! `towline classify`: what towline makes of one provider response.

use std::path::PathBuf;

use clap::Args;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use towline::ApiError;

use crate::CliError;

/// `towline classify --status CODE [--header 'Name: value']... [--body-file PATH | --body TEXT]`
#[derive(Debug, Clone, Args)]
pub(crate) struct ClassifyArgs {
    /// The HTTP status of the response.
    #[arg(long, value_name = "CODE")]
    status: u16,

    /// A response header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,

    /// Read the response body from this file.
    #[arg(long = "body-file", value_name = "PATH", conflicts_with = "body")]
    body_file: Option<PathBuf>,

    /// The response body.
    #[arg(long, value_name = "TEXT")]
    body: Option<String>,
}

/// The JSON `towline classify` prints. Its field names are a contract.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct Classification {
    /// The error class, or `null` for a response that is not an error.
    kind: Option<&'static str>,
    retryable: bool,
    retry_after_ms: Option<u64>,
    status: u16,
    provider_type: Option<String>,
    provider_code: Option<String>,
    message: Option<String>,
    request_id: Option<String>,
    user_message: Option<&'static str>,
}

impl From<&ApiError> for Classification {
    fn from(e: &ApiError) -> Self {
        Classification {
            kind: Some(e.kind().as_str()),
            retryable: e.is_retryable(),
            retry_after_ms: e
                .retry_after()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            status: e.status().as_u16(),
            provider_type: e.provider_type().map(str::to_owned),
            provider_code: e.provider_code().map(str::to_owned),
            message: e.message().map(str::to_owned),
            request_id: e.request_id().map(str::to_owned),
            user_message: Some(e.user_message()),
        }
    }
}

impl ClassifyArgs {
    pub(crate) fn run(&self) -> Result<String, CliError> {
        let status = StatusCode::from_u16(self.status).map_err(|_| {
            CliError::usage(format!("--status {} is not an HTTP status", self.status))
        })?;
        let headers = parse_headers(&self.headers)?;
        let body = match (&self.body_file, &self.body) {
            (Some(path), _) => std::fs::read(path).map_err(|e| {
                CliError::usage(format!("cannot read --body-file {}: {e}", path.display()))
            })?,
            (None, Some(text)) => text.clone().into_bytes(),
            (None, None) => Vec::new(),
        };
        let classification = classify(status, &headers, &body);
        Ok(serde_json::to_string_pretty(&classification).expect("serializable"))
    }
}

/// Every dialect, including kimi-free-api's errors answered with HTTP 200.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Classification {
    if status.is_success() {
        if let Some(error) = towline::normalize::classify_ok_body(headers, body) {
            return Classification::from(&error);
        }
        return Classification {
            kind: None,
            retryable: false,
            retry_after_ms: None,
            status: status.as_u16(),
            provider_type: None,
            provider_code: None,
            message: None,
            request_id: None,
            user_message: None,
        };
    }
    Classification::from(&towline::normalize::classify(status, headers, body))
}

fn parse_headers(lines: &[String]) -> Result<HeaderMap, CliError> {
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| CliError::usage(format!("--header {line:?} is not `Name: value`")))?;
        let name = HeaderName::try_from(name.trim())
            .map_err(|_| CliError::usage(format!("--header name {:?} is invalid", name.trim())))?;
        let value = HeaderValue::try_from(value.trim())
            .map_err(|_| CliError::usage(format!("--header {name} has an invalid value")))?;
        headers.append(name, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_reject_garbage() {
        let h = parse_headers(&["Retry-After: 3".into(), "x-request-id:abc".into()]).unwrap();
        assert_eq!(h["retry-after"], "3");
        assert_eq!(h["x-request-id"], "abc");
        assert!(parse_headers(&["no colon".into()]).is_err());
        assert!(parse_headers(&["bad name: v".into()]).is_err());
    }

    #[test]
    fn moonshot_quota_429_is_final() {
        let body = br#"{"error":{"message":"Your account is not active or has exceeded the current quota.","type":"exceeded_current_quota_error"}}"#;
        let c = classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), body);
        assert_eq!(c.kind, Some("quota_exhausted"));
        assert!(!c.retryable);
        assert_eq!(
            c.provider_type.as_deref(),
            Some("exceeded_current_quota_error")
        );
    }

    #[test]
    fn kimi_free_api_http_200_error_is_classified() {
        let body = br#"{"code":-2002,"message":"Token expired","data":null}"#;
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let c = classify(StatusCode::OK, &headers, body);
        assert_eq!(c.kind, Some("authentication"));
        assert_eq!(c.provider_code.as_deref(), Some("-2002"));
    }

    #[test]
    fn a_plain_success_is_no_error() {
        let c = classify(StatusCode::OK, &HeaderMap::new(), br#"{"choices":[]}"#);
        assert_eq!((c.kind, c.user_message), (None, None));
    }

    #[test]
    fn retry_after_ms_is_an_integer() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after-ms", HeaderValue::from_static("1500.7"));
        let c = classify(StatusCode::TOO_MANY_REQUESTS, &headers, b"");
        assert_eq!(c.kind, Some("rate_limited"));
        assert_eq!(c.retry_after_ms, Some(1500));
    }
}
