//! The non-seed providers of the dialect reference, every header form, errors inside event
//! streams, the HTTP-200 opt-in, transport errors and the success path, all through the
//! Normalize layer over a `service_fn` client.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use towline::core::{HintSource, RateLimitWindow};
use towline::normalize::{NormalizeBody, NormalizeLayer};
use towline::{BoxError, Error, ErrorKind, RateLimitSnapshot};

/// 2024-04-19T21:35:00Z.
fn fixed_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_713_562_500)
}

fn layer() -> NormalizeLayer {
    NormalizeLayer::builder()
        .wall_clock(fixed_now)
        .build()
        .unwrap()
}

async fn answer(
    layer: NormalizeLayer,
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response<NormalizeBody<Full<Bytes>>>, Error> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut response = Some(
        builder
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap(),
    );
    let client = service_fn(move |_: Request<String>| {
        let response = response.take().expect("one call");
        async move { Ok::<_, Infallible>(response) }
    });
    ServiceBuilder::new()
        .layer(layer)
        .service(client)
        .oneshot(Request::new(String::new()))
        .await
}

async fn error(status: u16, headers: &[(&str, &str)], body: &str) -> Error {
    answer(layer(), status, headers, body).await.unwrap_err()
}

#[track_caller]
fn assert_class(err: &Error, kind: ErrorKind, retryable: bool) {
    assert_eq!(err.kind(), kind, "{err:?}");
    assert_eq!(err.is_retryable(), retryable, "{err:?}");
}

fn api(err: &Error) -> &towline::ApiError {
    err.api()
        .unwrap_or_else(|| panic!("no ApiError in {err:?}"))
}

fn hint(err: &Error) -> Option<(Duration, HintSource)> {
    api(err).retry_hint().map(|h| (h.delay, h.source))
}

// ---------------------------------------------------------------------------------------------
// OpenAI
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn openai_insufficient_quota_429_is_quota() {
    let err = error(
        429,
        &[("x-request-id", "req_abc123")],
        r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::QuotaExhausted, false);
    assert_eq!(api(&err).provider_code(), Some("insufficient_quota"));
    assert_eq!(api(&err).request_id(), Some("req_abc123"));
}

#[tokio::test]
async fn openai_spend_and_credit_limit_codes_are_quota() {
    for code in [
        "credit_balance_exhausted",
        "monthly_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "organization_usage_limit_exceeded",
    ] {
        let body = format!(
            r#"{{"error":{{"message":"limit","type":"requests","param":null,"code":"{code}"}}}}"#
        );
        let err = error(429, &[], &body).await;
        assert_class(&err, ErrorKind::QuotaExhausted, false);
    }
}

#[tokio::test]
async fn openai_context_length_exceeded_400() {
    let err = error(
        400,
        &[],
        r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::ContextLengthExceeded, false);
    assert_eq!(api(&err).param(), Some("messages"));
}

#[tokio::test]
async fn openai_server_is_overloaded_503() {
    let err = error(
        503,
        &[],
        r#"{"error":{"message":"That model is currently overloaded with other requests.","type":"server_error","param":null,"code":"server_is_overloaded"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::Overloaded, true);
}

#[tokio::test]
async fn openai_rate_limit_with_go_duration_headers() {
    let headers = [
        ("x-ratelimit-limit-requests", "500"),
        ("x-ratelimit-remaining-requests", "499"),
        ("x-ratelimit-reset-requests", "120ms"),
        ("x-ratelimit-limit-tokens", "30000"),
        ("x-ratelimit-remaining-tokens", "0"),
        ("x-ratelimit-reset-tokens", "2m59.56s"),
    ];
    let err = error(
        429,
        &headers,
        r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 30000, Requested 900. Please try again in 1.8s.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::RateLimited, true);
    assert_eq!(
        hint(&err),
        Some((Duration::from_millis(1800), HintSource::Body))
    );
    let snapshot = api(&err).rate_limit().unwrap();
    assert_eq!(snapshot.requests.reset, Some(Duration::from_millis(120)));
    assert_eq!(
        snapshot.tokens,
        RateLimitWindow {
            limit: Some(30_000),
            remaining: Some(0),
            reset: Some(Duration::from_millis(179_560)),
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Azure OpenAI
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn azure_retry_after_in_message_429() {
    let err = error(
        429,
        &[("x-ratelimit-remaining-requests", "-1")],
        r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-02-01 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds."}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::RateLimited, true);
    assert_eq!(api(&err).provider_code(), Some("429"));
    assert_eq!(hint(&err), Some((Duration::from_secs(6), HintSource::Body)));
}

#[tokio::test]
async fn azure_86400_second_retry_after_is_quota() {
    let err = error(
        429,
        &[("retry-after", "86400")],
        r#"{"error":{"code":"429","message":"Requests to the Embeddings_Create Operation have exceeded call rate limit of your current AIServices S0 pricing tier. Please retry after 86400 seconds."}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::QuotaExhausted, false);
    assert_eq!(
        hint(&err),
        Some((Duration::from_secs(86_400), HintSource::RetryAfter))
    );
}

#[tokio::test]
async fn azure_content_filter_with_innererror() {
    let err = error(
        400,
        &[("apim-request-id", "x")],
        r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::ContentFiltered, false);
    assert_eq!(api(&err).provider_code(), Some("content_filter"));
}

// ---------------------------------------------------------------------------------------------
// Anthropic
// ---------------------------------------------------------------------------------------------

fn anthropic(ty: &str, message: &str) -> String {
    format!(
        r#"{{"type":"error","error":{{"type":"{ty}","message":"{message}"}},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}}"#
    )
}

#[tokio::test]
async fn anthropic_overloaded_529() {
    let err = error(
        529,
        &[("request-id", "req_header")],
        &anthropic("overloaded_error", "Overloaded"),
    )
    .await;
    assert_class(&err, ErrorKind::Overloaded, true);
    assert_eq!(api(&err).provider_type(), Some("overloaded_error"));
    // The body's request id is the one support asks for.
    assert_eq!(api(&err).request_id(), Some("req_011CSHoEeqs5C35K2UUqR7Fy"));
}

#[tokio::test]
async fn anthropic_billing_error_402_is_quota() {
    let err = error(
        402,
        &[],
        &anthropic("billing_error", "Your credit balance is too low"),
    )
    .await;
    assert_class(&err, ErrorKind::QuotaExhausted, false);
}

#[tokio::test]
async fn anthropic_request_too_large_413() {
    let err = error(
        413,
        &[],
        &anthropic(
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
    )
    .await;
    assert_class(&err, ErrorKind::PayloadTooLarge, false);
}

#[tokio::test]
async fn anthropic_prompt_too_long_400_is_context_length() {
    let err = error(
        400,
        &[],
        &anthropic(
            "invalid_request_error",
            "prompt is too long: 215000 tokens > 200000 maximum",
        ),
    )
    .await;
    assert_class(&err, ErrorKind::ContextLengthExceeded, false);
}

#[tokio::test]
async fn anthropic_rate_limit_with_rfc3339_resets() {
    let headers = [
        ("retry-after", "14"),
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "0"),
        ("anthropic-ratelimit-requests-reset", "2024-04-19T21:35:14Z"),
        ("anthropic-ratelimit-tokens-limit", "80000"),
        ("anthropic-ratelimit-tokens-remaining", "61000"),
        (
            "anthropic-ratelimit-tokens-reset",
            "2024-04-19T21:35:00.5+00:00",
        ),
    ];
    let err = error(
        429,
        &headers,
        &anthropic(
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        ),
    )
    .await;
    assert_class(&err, ErrorKind::RateLimited, true);
    let snapshot = api(&err).rate_limit().unwrap();
    assert_eq!(
        snapshot.requests,
        RateLimitWindow {
            limit: Some(50),
            remaining: Some(0),
            reset: Some(Duration::from_secs(14)),
        }
    );
    assert_eq!(snapshot.tokens.reset, Some(Duration::from_millis(500)));
}

// ---------------------------------------------------------------------------------------------
// Gemini
// ---------------------------------------------------------------------------------------------

fn gemini_429(quota_id: &str) -> String {
    format!(
        r#"{{"error":{{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED","details":[{{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"{quota_id}"}}]}},{{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"26s"}}]}}}}"#
    )
}

#[tokio::test]
async fn gemini_per_minute_429_is_rate_limited_with_retry_delay() {
    let err = error(
        429,
        &[],
        &gemini_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
    )
    .await;
    assert_class(&err, ErrorKind::RateLimited, true);
    assert_eq!(
        hint(&err),
        Some((Duration::from_secs(26), HintSource::Body))
    );
    assert_eq!(api(&err).provider_code(), Some("429"));
}

#[tokio::test]
async fn gemini_per_day_quota_id_is_quota() {
    let err = error(
        429,
        &[],
        &gemini_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
    )
    .await;
    assert_class(&err, ErrorKind::QuotaExhausted, false);
}

#[tokio::test]
async fn gemini_array_wrapped_error() {
    let body = format!(
        "[{}]",
        gemini_429("GenerateRequestsPerMinutePerProjectPerModel")
    );
    let err = error(429, &[], &body).await;
    assert_class(&err, ErrorKind::RateLimited, true);
    assert_eq!(
        hint(&err),
        Some((Duration::from_secs(26), HintSource::Body))
    );
}

#[tokio::test]
async fn gemini_503_overloaded() {
    let err = error(
        503,
        &[],
        r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::Overloaded, true);
}

#[tokio::test]
async fn gemini_invalid_argument_400() {
    let err = error(
        400,
        &[],
        r#"[{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}]"#,
    )
    .await;
    assert_class(&err, ErrorKind::InvalidRequest, false);
}

// ---------------------------------------------------------------------------------------------
// DeepSeek, Mistral, Groq
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn deepseek_insufficient_balance_402_is_quota() {
    let err = error(
        402,
        &[],
        r#"{"error":{"message":"Insufficient Balance","type":"unknown_error","param":null,"code":"invalid_request_error"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::QuotaExhausted, false);
}

#[tokio::test]
async fn deepseek_server_overloaded_503() {
    let err = error(
        503,
        &[],
        r#"{"error":{"message":"Server overloaded, please try again later.","type":"server_error","param":null,"code":null}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::Overloaded, true);
}

#[tokio::test]
async fn mistral_flat_shape_with_correlation_id() {
    let err = error(
        429,
        &[("mistral-correlation-id", "0193e2b5-1f0c")],
        r#"{"object":"error","message":"Requests rate limit exceeded","type":"rate_limited","param":null,"code":"1300"}"#,
    )
    .await;
    assert_class(&err, ErrorKind::RateLimited, true);
    assert_eq!(api(&err).provider_type(), Some("rate_limited"));
    assert_eq!(api(&err).provider_code(), Some("1300"));
    assert_eq!(api(&err).request_id(), Some("0193e2b5-1f0c"));
}

#[tokio::test]
async fn mistral_zero_limit_is_no_quota() {
    let err = error(
        429,
        &[("x-ratelimit-limit-tokens-month", "0"), ("x-ratelimit-remaining-tokens-month", "0")],
        r#"{"object":"error","message":"Requests rate limit exceeded","type":"rate_limited","param":null,"code":"1300"}"#,
    )
    .await;
    assert_class(&err, ErrorKind::QuotaExhausted, false);
}

#[tokio::test]
async fn groq_try_again_in_23_5s() {
    let err = error(
        429,
        &[("x-ratelimit-reset-requests", "2m59.56s"), ("x-ratelimit-reset-tokens", "7.66s")],
        r#"{"error":{"message":"Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01` service tier `on_demand` on tokens per minute (TPM): Limit 6000, Used 5806, Requested 1000. Please try again in 23.5s. Need more tokens?","type":"tokens","code":"rate_limit_exceeded"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::RateLimited, true);
    assert_eq!(
        hint(&err),
        Some((Duration::from_millis(23_500), HintSource::Body))
    );
}

#[tokio::test]
async fn groq_413_tpm_is_payload_too_large() {
    let err = error(
        413,
        &[],
        r#"{"error":{"message":"Request too large for model `llama3-70b-8192` in organization `org_01` on tokens per minute (TPM): Limit 6000, Requested 7662, please reduce your message size and try again.","type":"tokens","code":"rate_limit_exceeded"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::PayloadTooLarge, false);
}

#[tokio::test]
async fn groq_498_capacity_is_overloaded() {
    let err = error(
        498,
        &[],
        r#"{"error":{"message":"Flex tier capacity exceeded. This is a temporary error due to high demand.","type":"capacity_exceeded"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::Overloaded, true);
}

// ---------------------------------------------------------------------------------------------
// OpenRouter
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn openrouter_402_without_retry_after_is_out_of_credits() {
    let err = error(
        402,
        &[],
        r#"{"error":{"code":402,"message":"Insufficient credits. Add more using https://openrouter.ai/credits"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::QuotaExhausted, false);
    assert_eq!(api(&err).provider_code(), Some("402"));
}

#[tokio::test]
async fn openrouter_402_with_short_retry_after_is_rate_limited() {
    let err = error(
        402,
        &[("retry-after", "5")],
        r#"{"error":{"code":402,"message":"Payment processing, retry shortly"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::RateLimited, true);
}

#[tokio::test]
async fn openrouter_403_moderation_is_content_filtered() {
    let err = error(
        403,
        &[],
        r#"{"error":{"code":403,"message":"Your chosen model requires moderation and your input was flagged","metadata":{"reasons":["violence"],"flagged_input":"...","provider_name":"OpenAI","model_slug":"openai/gpt-4o"}}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::ContentFiltered, false);
}

#[tokio::test]
async fn openrouter_429_metadata_headers_with_epoch_millis_reset() {
    let err = error(
        429,
        &[],
        r#"{"error":{"code":429,"message":"Rate limit exceeded: free-models-per-min.","metadata":{"headers":{"X-RateLimit-Limit":"20","X-RateLimit-Remaining":"0","X-RateLimit-Reset":"1713562560000"},"provider_name":null}}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::RateLimited, true);
    let snapshot = api(&err).rate_limit().unwrap();
    assert_eq!(
        snapshot.requests,
        RateLimitWindow {
            limit: Some(20),
            remaining: Some(0),
            reset: Some(Duration::from_secs(60)),
        }
    );
    // No header or body hint: the exhausted window's reset is the hint.
    assert_eq!(
        hint(&err),
        Some((Duration::from_secs(60), HintSource::RateLimitReset))
    );
}

#[tokio::test]
async fn openrouter_per_day_reset_hours_away_is_quota() {
    let err = error(
        429,
        &[],
        r#"{"error":{"code":429,"message":"Rate limit exceeded: free-models-per-day.","metadata":{"headers":{"X-RateLimit-Limit":"50","X-RateLimit-Remaining":"0","X-RateLimit-Reset":"1713600000000"}}}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::QuotaExhausted, false);
}

#[tokio::test]
async fn openrouter_408_timeout_and_502_server() {
    let timeout = error(
        408,
        &[],
        r#"{"error":{"code":408,"message":"Request timed out"}}"#,
    )
    .await;
    assert_class(&timeout, ErrorKind::Timeout, true);
    let upstream = error(
        502,
        &[],
        r#"{"error":{"code":502,"message":"Provider returned error"}}"#,
    )
    .await;
    assert_class(&upstream, ErrorKind::Server, true);
}

// ---------------------------------------------------------------------------------------------
// Zhipu GLM, DashScope
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn zhipu_1113_arrears_on_429_is_quota() {
    let err = error(
        429,
        &[],
        r#"{"error":{"code":"1113","message":"您的账户已欠费，请充值后重试。"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::QuotaExhausted, false);
    assert_eq!(api(&err).provider_code(), Some("1113"));
}

#[tokio::test]
async fn zhipu_1308_usage_limit_is_quota() {
    let err = error(429, &[], r#"{"error":{"code":"1308","message":"已达到 5 小时的使用上限。您的限额将在 2025-09-01 12:00:00 重置。"}}"#).await;
    assert_class(&err, ErrorKind::QuotaExhausted, false);
}

#[tokio::test]
async fn zhipu_1301_is_content_filtered() {
    let err = error(
        400,
        &[],
        r#"{"error":{"code":"1301","message":"系统检测到输入或生成内容可能包含不安全或敏感内容"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::ContentFiltered, false);
}

#[tokio::test]
async fn zhipu_1302_and_1303_are_rate_limited_as_string_or_number() {
    for body in [
        r#"{"error":{"code":"1302","message":"您当前使用该API的并发数过高，请降低并发"}}"#,
        r#"{"error":{"code":1302,"message":"concurrency too high"}}"#,
        r#"{"error":{"code":"1303","message":"您当前使用该API的频率过高，请降低频率"}}"#,
    ] {
        let err = error(429, &[], body).await;
        assert_class(&err, ErrorKind::RateLimited, true);
    }
}

#[tokio::test]
async fn dashscope_arrearage_400_is_quota_with_top_level_request_id() {
    let err = error(
        400,
        &[],
        r#"{"error":{"message":"Access denied, please make sure your account is in good standing.","type":"Arrearage","param":null,"code":"Arrearage"},"request_id":"b6c4f4c1-2d3c-9a8f"}"#,
    )
    .await;
    assert_class(&err, ErrorKind::QuotaExhausted, false);
    assert_eq!(api(&err).request_id(), Some("b6c4f4c1-2d3c-9a8f"));
}

#[tokio::test]
async fn dashscope_data_inspection_failed_is_content_filtered() {
    let err = error(
        400,
        &[],
        r#"{"error":{"code":"data_inspection_failed","param":null,"message":"Input data may contain inappropriate content.","type":"data_inspection_failed"},"id":"chatcmpl-1","request_id":"rid-1"}"#,
    )
    .await;
    assert_class(&err, ErrorKind::ContentFiltered, false);
}

#[tokio::test]
async fn dashscope_native_flat_throttling_is_rate_limited() {
    let err = error(
        429,
        &[],
        r#"{"code":"Throttling.RateQuota","message":"Requests rate limit exceeded, please try again later.","request_id":"rid-2"}"#,
    )
    .await;
    assert_class(&err, ErrorKind::RateLimited, true);
    assert_eq!(api(&err).request_id(), Some("rid-2"));
}

// ---------------------------------------------------------------------------------------------
// Header forms
// ---------------------------------------------------------------------------------------------

const RATE_LIMITED: &str = r#"{"error":{"type":"rate_limit_error","message":"slow down"}}"#;

#[tokio::test]
async fn retry_after_ms_beats_retry_after() {
    let err = error(
        429,
        &[("retry-after", "7"), ("retry-after-ms", "1250.5")],
        RATE_LIMITED,
    )
    .await;
    assert_eq!(
        hint(&err),
        Some((Duration::from_micros(1_250_500), HintSource::RetryAfterMs))
    );
}

#[tokio::test]
async fn retry_after_fractional_seconds() {
    let err = error(429, &[("retry-after", "0.25")], RATE_LIMITED).await;
    assert_eq!(
        hint(&err),
        Some((Duration::from_millis(250), HintSource::RetryAfter))
    );
}

#[tokio::test]
async fn retry_after_http_date() {
    // fixed_now() is Fri, 19 Apr 2024 21:35:00 GMT.
    let err = error(
        429,
        &[("retry-after", "Fri, 19 Apr 2024 21:35:30 GMT")],
        RATE_LIMITED,
    )
    .await;
    assert_eq!(
        hint(&err),
        Some((Duration::from_secs(30), HintSource::RetryAfter))
    );
    assert_class(&err, ErrorKind::RateLimited, true);
}

#[tokio::test]
async fn retry_after_header_beats_body_hints() {
    let err = error(
        429,
        &[("retry-after", "2")],
        r#"{"error":{"type":"rate_limit_error","message":"Please try again in 23.5s"}}"#,
    )
    .await;
    assert_eq!(
        hint(&err),
        Some((Duration::from_secs(2), HintSource::RetryAfter))
    );
}

#[tokio::test]
async fn unparsable_retry_after_falls_back_to_the_body() {
    let err = error(
        429,
        &[("retry-after", "soon"), ("retry-after-ms", "NaN")],
        r#"{"error":{"type":"rate_limit_error","message":"Please try again in 3s"}}"#,
    )
    .await;
    assert_eq!(hint(&err), Some((Duration::from_secs(3), HintSource::Body)));
}

#[tokio::test]
async fn x_should_retry_false_on_503_is_not_retryable() {
    let err = error(
        503,
        &[("x-should-retry", "false")],
        r#"{"error":{"type":"server_error","message":"down"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::Server, false);
    assert_eq!(api(&err).should_retry(), Some(false));
}

#[tokio::test]
async fn x_should_retry_true_overrides_a_final_class() {
    let err = error(
        400,
        &[("x-should-retry", "TRUE")],
        r#"{"error":{"type":"invalid_request_error","message":"x"}}"#,
    )
    .await;
    assert_class(&err, ErrorKind::InvalidRequest, true);
}

#[tokio::test]
async fn hint_over_120_seconds_is_quota_and_120_is_not() {
    let long = error(429, &[("retry-after", "121")], RATE_LIMITED).await;
    assert_class(&long, ErrorKind::QuotaExhausted, false);
    let limit = error(429, &[("retry-after", "120")], RATE_LIMITED).await;
    assert_class(&limit, ErrorKind::RateLimited, true);
    let body_hint = error(
        429,
        &[],
        r#"{"error":{"type":"rate_limit_error","message":"Please try again in 3m0s"}}"#,
    )
    .await;
    assert_class(&body_hint, ErrorKind::QuotaExhausted, false);
}

#[tokio::test]
async fn long_retry_after_on_503_is_maintenance_not_quota() {
    let err = error(503, &[("retry-after", "3600")], "maintenance").await;
    assert_class(&err, ErrorKind::Server, true);
    assert_eq!(
        hint(&err),
        Some((Duration::from_secs(3600), HintSource::RetryAfter))
    );
}

#[tokio::test]
async fn go_duration_resets() {
    let err = error(
        429,
        &[
            ("x-ratelimit-reset-requests", "6m0s"),
            ("x-ratelimit-reset-tokens", "12ms"),
        ],
        RATE_LIMITED,
    )
    .await;
    let snapshot = api(&err).rate_limit().unwrap();
    assert_eq!(snapshot.requests.reset, Some(Duration::from_secs(360)));
    assert_eq!(snapshot.tokens.reset, Some(Duration::from_millis(12)));
}

#[tokio::test]
async fn epoch_second_and_millisecond_resets() {
    let err = error(
        429,
        &[
            ("x-ratelimit-reset-requests", "1713562530"),
            ("x-ratelimit-reset-tokens", "1713562501500"),
        ],
        RATE_LIMITED,
    )
    .await;
    let snapshot = api(&err).rate_limit().unwrap();
    assert_eq!(snapshot.requests.reset, Some(Duration::from_secs(30)));
    assert_eq!(snapshot.tokens.reset, Some(Duration::from_millis(1500)));
}

#[tokio::test]
async fn rfc3339_reset_in_the_past_is_zero() {
    let err = error(
        429,
        &[("anthropic-ratelimit-requests-reset", "2024-04-19T21:00:00Z")],
        RATE_LIMITED,
    )
    .await;
    assert_eq!(
        api(&err).rate_limit().unwrap().requests.reset,
        Some(Duration::ZERO)
    );
}

#[tokio::test]
async fn request_id_headers_in_order_of_preference() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("cf-ray", "ray"), ("x-request-id", "xr")], "xr"),
        (&[("cf-ray", "ray"), ("request-id", "rq")], "rq"),
        (&[("cf-ray", "ray"), ("mistral-correlation-id", "mc")], "mc"),
        (&[("cf-ray", "ray")], "ray"),
    ];
    for (headers, expected) in cases {
        let err = error(500, headers, "").await;
        assert_eq!(api(&err).request_id(), Some(expected));
    }
}

// ---------------------------------------------------------------------------------------------
// Errors inside event streams
// ---------------------------------------------------------------------------------------------

/// A body that yields the given chunks (or errors) one per poll, and remembers what it sent.
struct Chunks(VecDeque<Result<Bytes, std::io::Error>>);

impl Chunks {
    fn new(parts: &[&str]) -> (Self, Vec<Bytes>) {
        let bytes: Vec<Bytes> = parts
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect();
        (Chunks(bytes.iter().cloned().map(Ok).collect()), bytes)
    }

    fn fail_after(mut self) -> Self {
        self.0.push_back(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )));
        self
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.0.pop_front().map(|r| r.map(Frame::data)))
    }
}

async fn stream(
    layer: NormalizeLayer,
    body: Chunks,
) -> Result<Response<NormalizeBody<Chunks>>, Error> {
    let mut response = Some(
        Response::builder()
            .header("content-type", "text/event-stream; charset=utf-8")
            .header("x-request-id", "req-sse")
            .body(body)
            .unwrap(),
    );
    let client = service_fn(move |_: Request<String>| {
        let response = response.take().expect("one call");
        async move { Ok::<_, Infallible>(response) }
    });
    ServiceBuilder::new()
        .layer(layer)
        .service(client)
        .oneshot(Request::new(String::new()))
        .await
}

/// Reads a body to its end: the data frames, and the error it ended with, if any.
async fn drain<B>(body: B) -> (Vec<Bytes>, Option<Error>)
where
    B: Body<Data = Bytes, Error = Error> + Unpin,
{
    let mut body = body;
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => frames.extend(frame.into_data().ok()),
            Err(err) => {
                assert!(body.frame().await.is_none(), "a body ends after its error");
                return (frames, Some(err));
            }
        }
    }
    (frames, None)
}

const CONTENT: &str =
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n";

#[tokio::test]
async fn sse_openai_error_as_first_event_is_err_from_the_service() {
    let (body, _) = Chunks::new(&[
        ": keep-alive\n\n",
        "data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\"}}\n\n",
    ]);
    let err = stream(layer(), body).await.unwrap_err();
    assert!(matches!(err, Error::Api(_)), "{err:?}");
    assert_class(&err, ErrorKind::Server, true);
    assert_eq!(err.status(), Some(StatusCode::OK));
    assert_eq!(api(&err).request_id(), Some("req-sse"));
}

#[tokio::test]
async fn sse_anthropic_event_error_first_is_overloaded_err() {
    let (body, _) = Chunks::new(&[
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    ]);
    let err = stream(layer(), body).await.unwrap_err();
    assert_class(&err, ErrorKind::Overloaded, true);
    assert_eq!(api(&err).provider_type(), Some("overloaded_error"));
}

#[tokio::test]
async fn sse_first_event_error_split_mid_line_is_still_err() {
    let (body, _) = Chunks::new(&[
        "data: {\"error\":{\"mess",
        "age\":\"slow down\",\"type\":\"rate_limit_error\"}}\r",
        "\n\r\n",
    ]);
    let err = stream(layer(), body).await.unwrap_err();
    assert_class(&err, ErrorKind::RateLimited, true);
    assert_eq!(api(&err).message(), Some("slow down"));
}

#[tokio::test]
async fn sse_gemini_error_after_content_is_stream_interrupted() {
    let (body, sent) = Chunks::new(&[
        CONTENT,
        "data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\n\n",
    ]);
    let response = stream(layer(), body).await.expect("content came first");
    let (frames, err) = drain(response.into_body()).await;
    assert_eq!(
        frames,
        &sent[..1],
        "the content is delivered, the error event is not"
    );
    let err = err.expect("the stream ends with the in-band error");
    assert!(matches!(err, Error::StreamInterrupted(_)), "{err:?}");
    assert!(!err.is_retryable());
    let inner = api(&err);
    assert_eq!(inner.kind(), ErrorKind::Overloaded);
    assert_eq!(inner.status(), StatusCode::OK);
    assert_eq!(inner.provider_code(), Some("503"));
}

#[tokio::test]
async fn sse_openrouter_finish_reason_error_after_content_in_the_same_chunk() {
    let error_chunk = "data: {\"id\":\"gen-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}],\"error\":{\"code\":502,\"message\":\"Provider disconnected\"}}\n\n";
    let together = format!("{CONTENT}: OPENROUTER PROCESSING\n\n{error_chunk}data: [DONE]\n\n");
    let (body, _) = Chunks::new(&[&together]);
    let response = stream(layer(), body).await.unwrap();
    let (frames, err) = drain(response.into_body()).await;
    let delivered: Vec<u8> = frames.concat();
    assert_eq!(
        delivered,
        format!("{CONTENT}: OPENROUTER PROCESSING\n\n").as_bytes()
    );
    let err = err.unwrap();
    assert_eq!(err.kind(), ErrorKind::StreamInterrupted);
    assert_eq!(api(&err).kind(), ErrorKind::Server);
    assert_eq!(api(&err).message(), Some("Provider disconnected"));
}

#[tokio::test]
async fn sse_error_split_across_chunks_after_content() {
    let (body, sent) = Chunks::new(&[
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hel",
        "lo\"}}]}\n\ndata: {\"err",
        "or\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n",
    ]);
    let response = stream(layer(), body).await.unwrap();
    let (frames, err) = drain(response.into_body()).await;
    // The chunk where the error event began was delivered before it was complete.
    assert_eq!(frames, &sent[..2]);
    let err = err.unwrap();
    assert_eq!(err.kind(), ErrorKind::StreamInterrupted);
    assert_eq!(api(&err).kind(), ErrorKind::Server);
}

#[tokio::test]
async fn sse_peek_off_first_event_error_is_a_body_error_not_interrupted() {
    let layer = NormalizeLayer::builder()
        .sse_peek_first_event(false)
        .build()
        .unwrap();
    let (body, _) =
        Chunks::new(&["data: {\"error\":{\"type\":\"server_error\",\"message\":\"x\"}}\n\n"]);
    let response = stream(layer, body)
        .await
        .expect("not peeked: the response is returned");
    let (frames, err) = drain(response.into_body()).await;
    assert!(frames.is_empty());
    let err = err.unwrap();
    assert!(
        matches!(err, Error::Api(_)),
        "nothing was delivered: {err:?}"
    );
    assert_class(&err, ErrorKind::Server, true);
}

#[tokio::test]
async fn sse_chunks_pass_through_without_copying() {
    let (body, sent) = Chunks::new(&[
        ": OPENROUTER PROCESSING\n\n",
        "event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
        CONTENT,
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
    ]);
    let response = stream(layer(), body).await.unwrap();
    let (frames, err) = drain(response.into_body()).await;
    assert!(err.is_none());
    assert_eq!(frames, sent);
    for (delivered, original) in frames.iter().zip(&sent) {
        assert_eq!(
            delivered.as_ptr(),
            original.as_ptr(),
            "same buffer, not a copy"
        );
    }
}

#[tokio::test]
async fn sse_content_filter_finish_reason_is_not_an_error() {
    let (body, sent) = Chunks::new(&[
        CONTENT,
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"content_filter\"}]}\n\n",
        "data: [DONE]\n\n",
    ]);
    let response = stream(layer(), body).await.unwrap();
    let (frames, err) = drain(response.into_body()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(frames, sent);
}

#[tokio::test]
async fn sse_transport_error_after_content_is_stream_interrupted() {
    let (body, _) = Chunks::new(&[CONTENT, "data: {\"choices\":[]}\n\n"]);
    let response = stream(layer(), body.fail_after()).await.unwrap();
    let (frames, err) = drain(response.into_body()).await;
    assert_eq!(frames.len(), 2);
    let err = err.unwrap();
    let Error::StreamInterrupted(inner) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(inner.kind(), ErrorKind::Transport);
}

#[tokio::test]
async fn sse_transport_error_before_any_event_is_err_transport() {
    let (body, _) = Chunks::new(&[": ping\n\n"]);
    let err = stream(layer(), body.fail_after()).await.unwrap_err();
    assert_class(&err, ErrorKind::Transport, true);
}

#[tokio::test]
async fn sse_error_at_end_of_stream_without_blank_line() {
    let (body, _) = Chunks::new(&[
        CONTENT,
        "data: {\"error\":{\"message\":\"cut\",\"type\":\"server_error\"}}",
    ]);
    let response = stream(layer(), body).await.unwrap();
    let (_, err) = drain(response.into_body()).await;
    let err = err.unwrap();
    assert_eq!(err.kind(), ErrorKind::StreamInterrupted);
    assert_eq!(api(&err).message(), Some("cut"));
}

#[tokio::test]
async fn sse_scanning_off_passes_error_events_as_data() {
    let layer = NormalizeLayer::builder()
        .sse_scanning(false)
        .build()
        .unwrap();
    let (body, sent) = Chunks::new(&["data: {\"error\":{\"type\":\"server_error\"}}\n\n"]);
    let response = stream(layer, body).await.unwrap();
    let (frames, err) = drain(response.into_body()).await;
    assert!(err.is_none());
    assert_eq!(frames, sent);
}

// ---------------------------------------------------------------------------------------------
// The HTTP-200 opt-in, transport errors, the success path, configuration
// ---------------------------------------------------------------------------------------------

fn opt_in() -> NormalizeLayer {
    NormalizeLayer::builder()
        .inspect_ok_json(true)
        .build()
        .unwrap()
}

#[tokio::test]
async fn ok_body_opt_in_on_and_off() {
    let body = r#"{"errcode":-2005,"errmsg":"已有对话流正在输出","data":null}"#;
    let json = [("content-type", "application/json")];
    let err = answer(opt_in(), 200, &json, body).await.unwrap_err();
    assert_class(&err, ErrorKind::RateLimited, true);
    assert_eq!(err.status(), Some(StatusCode::OK));

    let response = answer(layer(), 200, &json, body).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, body.as_bytes());
}

#[tokio::test]
async fn ok_body_opt_in_reads_only_small_json() {
    let body = r#"{"code":-2001,"message":"x","data":null}"#;
    // Not JSON: not inspected.
    let text = answer(opt_in(), 200, &[("content-type", "text/plain")], body).await;
    assert!(text.is_ok());
    // Longer than the limit: not inspected.
    let small = NormalizeLayer::builder()
        .inspect_ok_json(true)
        .ok_json_limit(16)
        .build()
        .unwrap();
    let long = answer(small, 200, &[("content-type", "application/json")], body).await;
    let bytes = long
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(bytes, body.as_bytes());
}

#[tokio::test]
async fn ok_body_opt_in_sees_an_error_member() {
    let body = r#"{"id":"resp_1","status":"failed","error":{"code":"server_error","message":"The model failed"}}"#;
    let err = answer(opt_in(), 200, &[("content-type", "application/json")], body)
        .await
        .unwrap_err();
    assert_class(&err, ErrorKind::Server, true);
}

#[tokio::test]
async fn transport_error_of_the_client_is_transport() {
    let client = service_fn(|_: Request<String>| async {
        Err::<Response<Full<Bytes>>, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ))
    });
    let err = ServiceBuilder::new()
        .layer(layer())
        .service(client)
        .oneshot(Request::new(String::new()))
        .await
        .unwrap_err();
    assert_class(&err, ErrorKind::Transport, true);
    assert!(err.to_string().contains("connection refused"));
}

#[tokio::test]
async fn towline_error_from_below_passes_unchanged() {
    let client = service_fn(|_: Request<String>| async {
        Err::<Response<Full<Bytes>>, BoxError>(Box::new(Error::timeout(Duration::from_secs(3))))
    });
    let err = ServiceBuilder::new()
        .layer(layer())
        .service(client)
        .oneshot(Request::new(String::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_secs(3)),
        "{err:?}"
    );
}

#[tokio::test]
async fn success_passes_untouched_with_snapshot_in_extensions() {
    let body = r#"{"id":"chatcmpl-1","choices":[]}"#;
    let headers = [
        ("content-type", "application/json"),
        ("x-ratelimit-limit-requests", "10000"),
        ("x-ratelimit-remaining-requests", "9999"),
        ("x-ratelimit-reset-requests", "6ms"),
        ("x-ratelimit-limit-tokens", "-1"),
    ];
    let response = answer(layer(), 200, &headers, body).await.unwrap();
    let snapshot = response
        .extensions()
        .get::<RateLimitSnapshot>()
        .copied()
        .unwrap();
    assert_eq!(
        snapshot.requests,
        RateLimitWindow {
            limit: Some(10_000),
            remaining: Some(9_999),
            reset: Some(Duration::from_millis(6)),
        }
    );
    assert_eq!(snapshot.tokens, RateLimitWindow::default());
    let body_out = response.into_body();
    assert_eq!(body_out.size_hint().exact(), Some(body.len() as u64));
    assert_eq!(
        body_out.collect().await.unwrap().to_bytes(),
        body.as_bytes()
    );
}

#[tokio::test]
async fn success_without_rate_limit_headers_has_no_snapshot() {
    let response = answer(layer(), 200, &[("x-request-id", "r")], "{}")
        .await
        .unwrap();
    assert!(response.extensions().get::<RateLimitSnapshot>().is_none());
}

#[test]
fn invalid_settings_are_rejected_when_built() {
    let cases = [
        (
            NormalizeLayer::builder().error_body_limit(0),
            "error_body_limit",
        ),
        (
            NormalizeLayer::builder().error_body_limit(64 << 20),
            "error_body_limit",
        ),
        (
            NormalizeLayer::builder().error_body_timeout(Duration::ZERO),
            "error_body_timeout",
        ),
        (NormalizeLayer::builder().ok_json_limit(0), "ok_json_limit"),
        (
            NormalizeLayer::builder().ok_json_limit(64 << 20),
            "ok_json_limit",
        ),
        (
            NormalizeLayer::builder().sse_line_limit(10),
            "sse_line_limit",
        ),
        (
            NormalizeLayer::builder().sse_peek_limit(0),
            "sse_peek_limit",
        ),
    ];
    for (builder, setting) in cases {
        assert_eq!(builder.build().unwrap_err().setting(), setting);
    }
    assert!(
        NormalizeLayer::builder()
            .sse_scanning(false)
            .build()
            .is_ok()
    );
}
