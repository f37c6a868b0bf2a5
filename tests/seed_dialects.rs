//! Every error example and every status row of the five seed documents, sent through the
//! Normalize layer over a `service_fn` client.
//!
//! Each test asserts the whole normalized error: class, retryability, status, provider type
//! and code, message, request id and retry hint (value and source), so that a change in any
//! field the other layers read shows up here.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use towline::core::{HintSource, RateLimitWindow};
use towline::normalize::NormalizeLayer;
use towline::{Error, ErrorKind, RateLimitSnapshot};

/// The wall clock of every test: 2021-12-31T23:59:00Z, one minute before aiapi's example reset
/// `1640995200`.
fn fixed_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_640_995_140)
}

/// The key every request carries; no error message may ever contain it.
const KEY: &str = "sk-seedtest0123456789abcdef";

fn layer(inspect_ok_json: bool) -> NormalizeLayer {
    NormalizeLayer::builder()
        .wall_clock(fixed_now)
        .inspect_ok_json(inspect_ok_json)
        .build()
        .unwrap()
}

fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap()
}

/// Sends one request through the layer to a client that answers `status`, `headers`, `body`.
async fn call(
    layer: NormalizeLayer,
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response<towline::normalize::NormalizeBody<Full<Bytes>>>, Error> {
    let answer = response(status, headers, body);
    let mut answer = Some(answer);
    let client = service_fn(move |req: Request<String>| {
        assert!(req.headers().contains_key("authorization"));
        let answer = answer.take().expect("one call");
        async move { Ok::<_, Infallible>(answer) }
    });
    let request = Request::builder()
        .uri("https://api.example.test/v1/chat/completions")
        .header("authorization", format!("Bearer {KEY}"))
        .body(String::from("{}"))
        .unwrap();
    ServiceBuilder::new()
        .layer(layer)
        .service(client)
        .oneshot(request)
        .await
}

async fn error(status: u16, headers: &[(&str, &str)], body: &str) -> Error {
    call(layer(false), status, headers, body)
        .await
        .expect_err("an error answer must be an Err")
}

/// Everything a normalized error must say. `None` means "must be absent".
struct Expect {
    kind: ErrorKind,
    retryable: bool,
    status: u16,
    provider_type: Option<&'static str>,
    code: Option<&'static str>,
    message: Option<&'static str>,
    request_id: Option<&'static str>,
    hint: Option<(Duration, HintSource)>,
}

impl Expect {
    fn new(kind: ErrorKind, retryable: bool, status: u16) -> Self {
        Expect {
            kind,
            retryable,
            status,
            provider_type: None,
            code: None,
            message: None,
            request_id: None,
            hint: None,
        }
    }
    fn ty(mut self, t: &'static str) -> Self {
        self.provider_type = Some(t);
        self
    }
    fn code(mut self, c: &'static str) -> Self {
        self.code = Some(c);
        self
    }
    fn message(mut self, m: &'static str) -> Self {
        self.message = Some(m);
        self
    }
    fn request_id(mut self, id: &'static str) -> Self {
        self.request_id = Some(id);
        self
    }
    fn hint(mut self, secs: f64, source: HintSource) -> Self {
        self.hint = Some((Duration::from_secs_f64(secs), source));
        self
    }

    #[track_caller]
    fn check(&self, err: &Error) {
        let Error::Api(api) = err else {
            panic!("expected Error::Api, got {err:?}");
        };
        assert_eq!(err.kind(), self.kind, "kind of {err:?}");
        assert_eq!(err.is_retryable(), self.retryable, "retryable of {err:?}");
        assert_eq!(api.status().as_u16(), self.status, "status of {err:?}");
        assert_eq!(api.provider_type(), self.provider_type, "type of {err:?}");
        assert_eq!(api.provider_code(), self.code, "code of {err:?}");
        assert_eq!(api.message(), self.message, "message of {err:?}");
        assert_eq!(api.request_id(), self.request_id, "request id of {err:?}");
        assert_eq!(
            api.retry_hint().map(|h| (h.delay, h.source)),
            self.hint,
            "hint of {err:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(KEY), "the key leaked: {shown}");
    }
}

// ---------------------------------------------------------------------------------------------
// 000: Moonshot / Kimi (OpenAI-compatible): {"error":{"type","message"}}, no code.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn moonshot_invalid_authentication_401_not_retryable() {
    let err = error(
        401,
        &[("x-request-id", "moon-req-1")],
        r#"{"error":{"message":"Invalid Authentication","type":"invalid_authentication_error"}}"#,
    )
    .await;
    Expect::new(ErrorKind::Authentication, false, 401)
        .ty("invalid_authentication_error")
        .message("Invalid Authentication")
        .request_id("moon-req-1")
        .check(&err);
    assert_eq!(
        err.user_message(),
        "Server configuration error. Please try again later."
    );
}

#[tokio::test]
async fn moonshot_incorrect_api_key_401_scrubs_the_echoed_key() {
    let body = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {KEY}, Authentication failed. Please check if the API key is correct and retry.","type":"incorrect_api_key_error"}}}}"#
    );
    let err = error(401, &[], &body).await;
    Expect::new(ErrorKind::Authentication, false, 401)
        .ty("incorrect_api_key_error")
        .message("Incorrect API key provided: [redacted], Authentication failed. Please check if the API key is correct and retry.")
        .check(&err);
}

#[tokio::test]
async fn moonshot_content_filter_400_not_retryable() {
    let err = error(
        400,
        &[],
        r#"{"error":{"type":"content_filter","message":"The request was rejected because it was considered high risk"}}"#,
    )
    .await;
    Expect::new(ErrorKind::ContentFiltered, false, 400)
        .ty("content_filter")
        .message("The request was rejected because it was considered high risk")
        .check(&err);
    assert_eq!(
        err.user_message(),
        "Your request cannot be processed due to content restrictions."
    );
}

#[tokio::test]
async fn moonshot_invalid_request_400_not_retryable() {
    let err = error(
        400,
        &[],
        r#"{"error":{"type":"invalid_request_error","message":"content must be a string"}}"#,
    )
    .await;
    Expect::new(ErrorKind::InvalidRequest, false, 400)
        .ty("invalid_request_error")
        .message("content must be a string")
        .check(&err);
    assert_eq!(
        err.user_message(),
        "Sorry, something went wrong with your request. Please try a different query."
    );
}

#[tokio::test]
async fn moonshot_temperature_zero_with_n_400_is_invalid_request() {
    let err = error(
        400,
        &[],
        r#"{"error":{"type":"invalid_request_error","message":"invalid temperature: only 1 is allowed when n > 1"}}"#,
    )
    .await;
    Expect::new(ErrorKind::InvalidRequest, false, 400)
        .ty("invalid_request_error")
        .message("invalid temperature: only 1 is allowed when n > 1")
        .check(&err);
}

#[tokio::test]
async fn moonshot_input_token_length_too_long_400_is_context_length() {
    let err = error(
        400,
        &[],
        r#"{"error":{"type":"invalid_request_error","message":"Invalid request: Input token length too long"}}"#,
    )
    .await;
    Expect::new(ErrorKind::ContextLengthExceeded, false, 400)
        .ty("invalid_request_error")
        .message("Invalid request: Input token length too long")
        .check(&err);
}

#[tokio::test]
async fn moonshot_exceeded_model_token_limit_400_is_context_length() {
    let err = error(
        400,
        &[],
        r#"{"error":{"type":"invalid_request_error","message":"Invalid request: Your request exceeded model token limit: 131072"}}"#,
    )
    .await;
    Expect::new(ErrorKind::ContextLengthExceeded, false, 400)
        .ty("invalid_request_error")
        .message("Invalid request: Your request exceeded model token limit: 131072")
        .check(&err);
}

#[tokio::test]
async fn moonshot_quota_403_not_retryable() {
    let err = error(
        403,
        &[],
        r#"{"error":{
"message":"Your account <ID> is not active, organization <ORG> exceeded current quota, please check your plan and billing details",
"type":"exceeded_current_quota_error"
}}"#,
    )
    .await;
    Expect::new(ErrorKind::QuotaExhausted, false, 403)
        .ty("exceeded_current_quota_error")
        .message("Your account <ID> is not active, organization <ORG> exceeded current quota, please check your plan and billing details")
        .check(&err);
}

#[tokio::test]
async fn moonshot_quota_429_not_retryable() {
    let err = error(
        429,
        &[("retry-after", "1")],
        r#"{
"error": {
"type": "exceeded_current_quota_error",
"message": "Your account is not active or has exceeded the current quota. Please check your plan and billing details."
}
}"#,
    )
    .await;
    Expect::new(ErrorKind::QuotaExhausted, false, 429)
        .ty("exceeded_current_quota_error")
        .message("Your account is not active or has exceeded the current quota. Please check your plan and billing details.")
        .hint(1.0, HintSource::RetryAfter)
        .check(&err);
    assert_eq!(
        err.user_message(),
        "The AI service has reached its usage limit. Please try again later."
    );
}

#[tokio::test]
async fn moonshot_rate_limit_429_retryable_after_retry_after() {
    let err = error(
        429,
        &[("retry-after", "3"), ("x-request-id", "moon-rl")],
        r#"{"error":{"type":"rate_limit_reached_error","message":"Your account org-1<ak-1> request reached organization max RPM: 3, please try again after 1 seconds"}}"#,
    )
    .await;
    // The header wins over the message's "after 1 seconds".
    Expect::new(ErrorKind::RateLimited, true, 429)
        .ty("rate_limit_reached_error")
        .message("Your account org-1<ak-1> request reached organization max RPM: 3, please try again after 1 seconds")
        .request_id("moon-rl")
        .hint(3.0, HintSource::RetryAfter)
        .check(&err);
    assert_eq!(
        err.user_message(),
        "The service is receiving too many requests. Please slow down and try again in a moment."
    );
}

#[tokio::test]
async fn moonshot_rate_limit_429_without_header_uses_the_message() {
    let err = error(
        429,
        &[],
        r#"{"error":{"type":"rate_limit_reached_error","message":"request reached max concurrency: 5, please try again after 1 seconds"}}"#,
    )
    .await;
    Expect::new(ErrorKind::RateLimited, true, 429)
        .ty("rate_limit_reached_error")
        .message("request reached max concurrency: 5, please try again after 1 seconds")
        .hint(1.0, HintSource::Body)
        .check(&err);
}

#[tokio::test]
async fn moonshot_engine_overloaded_429_retryable() {
    let err = error(
        429,
        &[],
        r#"{"error":{"type":"engine_overloaded_error","message":"The engine is currently overloaded, please try again later"}}"#,
    )
    .await;
    Expect::new(ErrorKind::Overloaded, true, 429)
        .ty("engine_overloaded_error")
        .message("The engine is currently overloaded, please try again later")
        .check(&err);
}

#[tokio::test]
async fn moonshot_model_not_found_404_not_retryable() {
    let err = error(
        404,
        &[],
        r#"{"error":{"type":"resource_not_found_error","code":"model_not_found","message":"Not found the model text-davinci-003 or Permission denied"}}"#,
    )
    .await;
    Expect::new(ErrorKind::NotFound, false, 404)
        .ty("resource_not_found_error")
        .code("model_not_found")
        .message("Not found the model text-davinci-003 or Permission denied")
        .check(&err);
}

#[tokio::test]
async fn moonshot_server_error_500_retryable() {
    let err = error(
        500,
        &[],
        r#"{"error":{"type":"server_error","message":"Internal server error, please wait a moment and retry"}}"#,
    )
    .await;
    Expect::new(ErrorKind::Server, true, 500)
        .ty("server_error")
        .message("Internal server error, please wait a moment and retry")
        .check(&err);
    assert_eq!(
        err.user_message(),
        "The AI service is temporarily unavailable. Please retry after a few seconds."
    );
}

#[tokio::test]
async fn moonshot_bad_gateway_502_from_a_proxy_retryable() {
    let err = error(
        502,
        &[("cf-ray", "8c1f2a-SJC")],
        "<html><body>502 Bad Gateway</body></html>",
    )
    .await;
    Expect::new(ErrorKind::Server, true, 502)
        .request_id("8c1f2a-SJC")
        .check(&err);
}

#[tokio::test]
async fn moonshot_server_unavailable_503_retryable() {
    let err = error(
        503,
        &[],
        r#"{"error":{"type":"server_unavailable","message":"Service unavailable, please retry later"}}"#,
    )
    .await;
    Expect::new(ErrorKind::Server, true, 503)
        .ty("server_unavailable")
        .message("Service unavailable, please retry later")
        .check(&err);
}

#[tokio::test]
async fn moonshot_server_busy_503_is_overloaded() {
    let err = error(
        503,
        &[],
        r#"{"error":{"type":"server_unavailable","message":"Server is busy, please try again later."}}"#,
    )
    .await;
    Expect::new(ErrorKind::Overloaded, true, 503)
        .ty("server_unavailable")
        .message("Server is busy, please try again later.")
        .check(&err);
}

#[tokio::test]
async fn moonshot_gateway_timeout_504_retryable() {
    let err = error(504, &[], "upstream request timeout").await;
    Expect::new(ErrorKind::Timeout, true, 504)
        .message("upstream request timeout")
        .check(&err);
}

// ---------------------------------------------------------------------------------------------
// 001: Kaiko V2: {"error":{"type","code","message","param","request_id"}}.
// ---------------------------------------------------------------------------------------------

fn kaiko(ty: &str, code: &str, message: &str, param: Option<&str>) -> String {
    let param = param.map_or("null".to_owned(), |p| format!("\"{p}\""));
    format!(
        r#"{{"error":{{"type":"{ty}","code":"{code}","message":"{message}","param":{param},"request_id":"req-7f65ab21d1"}}}}"#
    )
}

#[tokio::test]
async fn kaiko_missing_field_400_keeps_param_and_request_id() {
    let err = error(
        400,
        &[],
        &kaiko(
            "invalid_request_error",
            "missing_field",
            "The 'messages' field is required",
            Some("messages"),
        ),
    )
    .await;
    Expect::new(ErrorKind::InvalidRequest, false, 400)
        .ty("invalid_request_error")
        .code("missing_field")
        .message("The 'messages' field is required")
        .request_id("req-7f65ab21d1")
        .check(&err);
    assert_eq!(err.api().unwrap().param(), Some("messages"));
}

#[tokio::test]
async fn kaiko_invalid_api_key_401_scrubs_kaiko_keys() {
    let err = error(
        401,
        &[],
        &kaiko(
            "authentication_error",
            "invalid_api_key",
            "Invalid API key kaiko_live_9f8e7d6c5b4a",
            None,
        ),
    )
    .await;
    Expect::new(ErrorKind::Authentication, false, 401)
        .ty("authentication_error")
        .code("invalid_api_key")
        .message("Invalid API key [redacted]")
        .request_id("req-7f65ab21d1")
        .check(&err);
}

#[tokio::test]
async fn kaiko_key_revoked_403_is_permission_denied() {
    let err = error(
        403,
        &[],
        &kaiko("forbidden_error", "key_revoked", "API key revoked", None),
    )
    .await;
    Expect::new(ErrorKind::PermissionDenied, false, 403)
        .ty("forbidden_error")
        .code("key_revoked")
        .message("API key revoked")
        .request_id("req-7f65ab21d1")
        .check(&err);
}

#[tokio::test]
async fn kaiko_context_not_found_404_not_retryable() {
    let err = error(
        404,
        &[],
        &kaiko(
            "not_found_error",
            "context_not_found",
            "Context not found or expired",
            Some("context_id"),
        ),
    )
    .await;
    Expect::new(ErrorKind::NotFound, false, 404)
        .ty("not_found_error")
        .code("context_not_found")
        .message("Context not found or expired")
        .request_id("req-7f65ab21d1")
        .check(&err);
}

#[tokio::test]
async fn kaiko_conflict_409_retryable() {
    let err = error(
        409,
        &[],
        &kaiko(
            "conflict_error",
            "duplicate_id",
            "Duplicate external_id in same context",
            Some("external_id"),
        ),
    )
    .await;
    Expect::new(ErrorKind::Conflict, true, 409)
        .ty("conflict_error")
        .code("duplicate_id")
        .message("Duplicate external_id in same context")
        .request_id("req-7f65ab21d1")
        .check(&err);
}

#[tokio::test]
async fn kaiko_payload_too_large_413_not_retryable() {
    let err = error(
        413,
        &[],
        &kaiko(
            "invalid_request_error",
            "payload_too_large",
            "Request body exceeds size limit",
            None,
        ),
    )
    .await;
    Expect::new(ErrorKind::PayloadTooLarge, false, 413)
        .ty("invalid_request_error")
        .code("payload_too_large")
        .message("Request body exceeds size limit")
        .request_id("req-7f65ab21d1")
        .check(&err);
}

#[tokio::test]
async fn kaiko_invalid_role_422_not_retryable() {
    let err = error(
        422,
        &[],
        &kaiko(
            "invalid_request_error",
            "invalid_role",
            "Invalid value for a field",
            Some("messages[0].role"),
        ),
    )
    .await;
    Expect::new(ErrorKind::InvalidRequest, false, 422)
        .ty("invalid_request_error")
        .code("invalid_role")
        .message("Invalid value for a field")
        .request_id("req-7f65ab21d1")
        .check(&err);
}

#[tokio::test]
async fn kaiko_rate_limit_429_retryable_with_remaining() {
    let err = error(
        429,
        &[("Retry-After", "30"), ("X-RateLimit-Remaining", "0")],
        &kaiko(
            "rate_limit_error",
            "too_many_requests",
            "Rate limit exceeded",
            None,
        ),
    )
    .await;
    Expect::new(ErrorKind::RateLimited, true, 429)
        .ty("rate_limit_error")
        .code("too_many_requests")
        .message("Rate limit exceeded")
        .request_id("req-7f65ab21d1")
        .hint(30.0, HintSource::RetryAfter)
        .check(&err);
    let snapshot = err.api().unwrap().rate_limit().unwrap();
    assert_eq!(snapshot.requests.remaining, Some(0));
}

#[tokio::test]
async fn kaiko_internal_500_retryable() {
    let err = error(
        500,
        &[],
        &kaiko("server_error", "internal", "Unexpected server error", None),
    )
    .await;
    Expect::new(ErrorKind::Server, true, 500)
        .ty("server_error")
        .code("internal")
        .message("Unexpected server error")
        .request_id("req-7f65ab21d1")
        .check(&err);
}

#[tokio::test]
async fn kaiko_service_unavailable_503_retryable() {
    let err = error(
        503,
        &[],
        &kaiko(
            "server_error",
            "service_unavailable",
            "Service temporarily unavailable",
            None,
        ),
    )
    .await;
    Expect::new(ErrorKind::Server, true, 503)
        .ty("server_error")
        .code("service_unavailable")
        .message("Service temporarily unavailable")
        .request_id("req-7f65ab21d1")
        .check(&err);
}

// ---------------------------------------------------------------------------------------------
// 002: kimi-free-api: {"errcode","errmsg","data":null}, and {"code","message"} with HTTP 200.
// ---------------------------------------------------------------------------------------------

fn kimi(code: i64, message: &str) -> String {
    format!(r#"{{"errcode":{code},"errmsg":"{message}","data":null}}"#)
}

#[tokio::test]
async fn kimi_free_api_validation_1001_400() {
    let err = error(400, &[], &kimi(-1001, "参数校验失败")).await;
    Expect::new(ErrorKind::InvalidRequest, false, 400)
        .code("-1001")
        .message("参数校验失败")
        .check(&err);
}

#[tokio::test]
async fn kimi_free_api_no_route_1002_404() {
    let err = error(404, &[], &kimi(-1002, "无匹配的路由")).await;
    Expect::new(ErrorKind::NotFound, false, 404)
        .code("-1002")
        .message("无匹配的路由")
        .check(&err);
}

#[tokio::test]
async fn kimi_free_api_token_expired_2002() {
    let err = error(401, &[], &kimi(-2002, "Token已失效")).await;
    Expect::new(ErrorKind::Authentication, false, 401)
        .code("-2002")
        .message("Token已失效")
        .check(&err);
}

#[tokio::test]
async fn kimi_free_api_bad_file_url_2003_400() {
    let err = error(400, &[], &kimi(-2003, "远程文件URL非法")).await;
    Expect::new(ErrorKind::InvalidRequest, false, 400)
        .code("-2003")
        .message("远程文件URL非法")
        .check(&err);
}

#[tokio::test]
async fn kimi_free_api_file_too_large_2004_413() {
    let err = error(413, &[], &kimi(-2004, "文件超出大小")).await;
    Expect::new(ErrorKind::PayloadTooLarge, false, 413)
        .code("-2004")
        .message("文件超出大小")
        .check(&err);
}

#[tokio::test]
async fn kimi_free_api_stream_busy_2005_429_retryable() {
    let err = error(429, &[], &kimi(-2005, "已有对话流正在输出")).await;
    Expect::new(ErrorKind::RateLimited, true, 429)
        .code("-2005")
        .message("已有对话流正在输出")
        .check(&err);
}

#[tokio::test]
async fn kimi_free_api_system_error_1000_500_retryable() {
    let err = error(500, &[], &kimi(-1000, "系统异常请稍后重试")).await;
    Expect::new(ErrorKind::Server, true, 500)
        .code("-1000")
        .message("系统异常请稍后重试")
        .check(&err);
}

#[tokio::test]
async fn kimi_free_api_request_failed_2001_retryable() {
    let err = error(500, &[], &kimi(-2001, "请求失败")).await;
    Expect::new(ErrorKind::Server, true, 500)
        .code("-2001")
        .message("请求失败")
        .check(&err);
}

#[tokio::test]
async fn kimi_free_api_params_2000_400() {
    let err = error(400, &[], &kimi(-2000, "请求参数非法")).await;
    Expect::new(ErrorKind::InvalidRequest, false, 400)
        .code("-2000")
        .message("请求参数非法")
        .check(&err);
}

#[tokio::test]
async fn kimi_free_api_research_quota_2006_not_retryable() {
    let err = error(429, &[], &kimi(-2006, "探索版使用量已达到上限")).await;
    Expect::new(ErrorKind::QuotaExhausted, false, 429)
        .code("-2006")
        .message("探索版使用量已达到上限")
        .check(&err);
}

#[tokio::test]
async fn kimi_free_api_http_200_request_failed_2001_with_opt_in() {
    let body = r#"{"code":-2001,"message":"[请求kimi失败]: 请求失败","data":null}"#;
    let err = call(
        layer(true),
        200,
        &[("content-type", "application/json; charset=utf-8")],
        body,
    )
    .await
    .expect_err("the opt-in turns the HTTP-200 error into an Err");
    Expect::new(ErrorKind::Server, true, 200)
        .code("-2001")
        .message("[请求kimi失败]: 请求失败")
        .check(&err);
}

#[tokio::test]
async fn kimi_free_api_http_200_token_expired_with_opt_in() {
    let body = r#"{"code":-2002,"message":"Token已失效","data":null}"#;
    let err = call(
        layer(true),
        200,
        &[("content-type", "application/json")],
        body,
    )
    .await
    .unwrap_err();
    Expect::new(ErrorKind::Authentication, false, 200)
        .code("-2002")
        .message("Token已失效")
        .check(&err);
}

#[tokio::test]
async fn kimi_free_api_http_200_passes_untouched_without_opt_in() {
    let body = r#"{"code":-2001,"message":"请求失败","data":null}"#;
    let response = call(
        layer(false),
        200,
        &[("content-type", "application/json")],
        body,
    )
    .await
    .expect("off by default: a 200 is a success");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, body.as_bytes());
}

#[tokio::test]
async fn kimi_free_api_http_200_success_passes_with_opt_in() {
    let body = r#"{"id":"cmpl-1","object":"chat.completion","choices":[{"message":{"role":"assistant","content":"你好"}}]}"#;
    let response = call(
        layer(true),
        200,
        &[("content-type", "application/json")],
        body,
    )
    .await
    .expect("a real success passes");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, body.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// 003: Xiaomi MiMo: {"error":{"code","message","type":"error"}}.
// ---------------------------------------------------------------------------------------------

fn mimo(code: &str, message: &str) -> String {
    format!(r#"{{"error":{{"code":"{code}","message":"{message}","type":"error"}}}}"#)
}

#[tokio::test]
async fn mimo_invalid_request_400_not_retryable() {
    let err = error(
        400,
        &[],
        &mimo(
            "invalid_request",
            "The request body is malformed or missing required fields",
        ),
    )
    .await;
    Expect::new(ErrorKind::InvalidRequest, false, 400)
        .code("invalid_request")
        .message("The request body is malformed or missing required fields")
        .check(&err);
}

#[tokio::test]
async fn mimo_authentication_failed_401_not_retryable() {
    let err = error(
        401,
        &[],
        &mimo("authentication_failed", "Invalid API Key provided."),
    )
    .await;
    Expect::new(ErrorKind::Authentication, false, 401)
        .code("authentication_failed")
        .message("Invalid API Key provided.")
        .check(&err);
}

#[tokio::test]
async fn mimo_permission_denied_403_not_retryable() {
    let err = error(
        403,
        &[],
        &mimo(
            "permission_denied",
            "Your account does not have access to this resource",
        ),
    )
    .await;
    Expect::new(ErrorKind::PermissionDenied, false, 403)
        .code("permission_denied")
        .message("Your account does not have access to this resource")
        .check(&err);
}

#[tokio::test]
async fn mimo_not_found_404_not_retryable() {
    let err = error(
        404,
        &[],
        &mimo("not_found", "The requested resource does not exist"),
    )
    .await;
    Expect::new(ErrorKind::NotFound, false, 404)
        .code("not_found")
        .message("The requested resource does not exist")
        .check(&err);
}

#[tokio::test]
async fn mimo_rate_limit_exceeded_429_retryable() {
    let err = error(
        429,
        &[("retry-after", "2")],
        &mimo(
            "rate_limit_exceeded",
            "Too many requests, rate limit exceeded",
        ),
    )
    .await;
    Expect::new(ErrorKind::RateLimited, true, 429)
        .code("rate_limit_exceeded")
        .message("Too many requests, rate limit exceeded")
        .hint(2.0, HintSource::RetryAfter)
        .check(&err);
}

#[tokio::test]
async fn mimo_token_plan_quota_429_not_retryable() {
    let err = error(
        429,
        &[],
        &mimo(
            "rate_limit_exceeded",
            "Your Token Plan quota has been used up. Please upgrade your plan.",
        ),
    )
    .await;
    Expect::new(ErrorKind::QuotaExhausted, false, 429)
        .code("rate_limit_exceeded")
        .message("Your Token Plan quota has been used up. Please upgrade your plan.")
        .check(&err);
}

#[tokio::test]
async fn mimo_insufficient_balance_402_is_quota() {
    let err = error(
        402,
        &[],
        &mimo("insufficient_balance", "Insufficient account balance"),
    )
    .await;
    Expect::new(ErrorKind::QuotaExhausted, false, 402)
        .code("insufficient_balance")
        .message("Insufficient account balance")
        .check(&err);
}

#[tokio::test]
async fn mimo_content_filter_421_not_retryable() {
    let err = error(
        421,
        &[],
        &mimo(
            "content_violation",
            "The input may contain content that violates the usage policy",
        ),
    )
    .await;
    Expect::new(ErrorKind::ContentFiltered, false, 421)
        .code("content_violation")
        .message("The input may contain content that violates the usage policy")
        .check(&err);
}

#[tokio::test]
async fn mimo_internal_error_500_retryable() {
    let err = error(500, &[], &mimo("internal_error", "Server internal error")).await;
    Expect::new(ErrorKind::Server, true, 500)
        .code("internal_error")
        .message("Server internal error")
        .check(&err);
}

#[tokio::test]
async fn mimo_service_unavailable_503_high_load_is_overloaded() {
    let err = error(
        503,
        &[],
        &mimo(
            "service_unavailable",
            "Service temporarily unavailable due to high load",
        ),
    )
    .await;
    Expect::new(ErrorKind::Overloaded, true, 503)
        .code("service_unavailable")
        .message("Service temporarily unavailable due to high load")
        .check(&err);
}

// ---------------------------------------------------------------------------------------------
// 004: aiapi.services: top-level {"code","message","data"}.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn aiapi_quota_not_enough_403_not_retryable() {
    let err = error(
        403,
        &[],
        r#"{ "code": "quota_not_enough", "message": "user quota is not enough", "data": null }"#,
    )
    .await;
    Expect::new(ErrorKind::QuotaExhausted, false, 403)
        .code("quota_not_enough")
        .message("user quota is not enough")
        .check(&err);
}

#[tokio::test]
async fn aiapi_invalid_api_key_401_not_retryable() {
    let err = error(
        401,
        &[],
        r#"{ "code": "invalid_api_key", "message": "Invalid API key provided", "data": null }"#,
    )
    .await;
    Expect::new(ErrorKind::Authentication, false, 401)
        .code("invalid_api_key")
        .message("Invalid API key provided")
        .check(&err);
}

#[tokio::test]
async fn aiapi_model_not_found_404_not_retryable() {
    let err = error(
        404,
        &[],
        r#"{ "code": "model_not_found", "message": "model 'invalid-model-name' not found", "data": null }"#,
    )
    .await;
    Expect::new(ErrorKind::NotFound, false, 404)
        .code("model_not_found")
        .message("model 'invalid-model-name' not found")
        .check(&err);
}

#[tokio::test]
async fn aiapi_task_not_found_404_not_retryable() {
    let err = error(
        404,
        &[],
        r#"{ "code": "task_not_found", "message": "Task with id 'abc123' not found", "data": null }"#,
    )
    .await;
    Expect::new(ErrorKind::NotFound, false, 404)
        .code("task_not_found")
        .message("Task with id 'abc123' not found")
        .check(&err);
}

#[tokio::test]
async fn aiapi_invalid_request_400_not_retryable() {
    let err = error(
        400,
        &[],
        r#"{ "code": "invalid_request_error", "message": "Invalid parameter: max_tokens must be a positive integer", "data": null }"#,
    )
    .await;
    Expect::new(ErrorKind::InvalidRequest, false, 400)
        .code("invalid_request_error")
        .message("Invalid parameter: max_tokens must be a positive integer")
        .check(&err);
}

#[tokio::test]
async fn aiapi_content_filtered_400_not_retryable() {
    let err = error(
        400,
        &[],
        r#"{ "code": "content_filtered", "message": "Your request was rejected due to content policy", "data": { "reason": "inappropriate_content" } }"#,
    )
    .await;
    Expect::new(ErrorKind::ContentFiltered, false, 400)
        .code("content_filtered")
        .message("Your request was rejected due to content policy")
        .check(&err);
}

#[tokio::test]
async fn aiapi_rate_limit_exceeded_429_retryable_with_epoch_reset() {
    let headers = [
        ("X-RateLimit-Limit-Requests", "60"),
        ("X-RateLimit-Remaining-Requests", "0"),
        ("X-RateLimit-Reset-Requests", "1640995200"),
        ("Retry-After", "60"),
    ];
    let err = error(
        429,
        &headers,
        r#"{ "code": "rate_limit_exceeded", "message": "Rate limit exceeded. Please try again later.", "data": { "retry_after": 60 } }"#,
    )
    .await;
    Expect::new(ErrorKind::RateLimited, true, 429)
        .code("rate_limit_exceeded")
        .message("Rate limit exceeded. Please try again later.")
        .hint(60.0, HintSource::RetryAfter)
        .check(&err);
    let snapshot = err.api().unwrap().rate_limit().copied().unwrap();
    assert_eq!(
        snapshot.requests,
        RateLimitWindow {
            limit: Some(60),
            remaining: Some(0),
            reset: Some(Duration::from_secs(60)),
        }
    );
}

#[tokio::test]
async fn aiapi_rate_limit_exceeded_429_body_hint_without_header() {
    let err = error(
        429,
        &[],
        r#"{ "code": "rate_limit_exceeded", "message": "Rate limit exceeded. Please try again later.", "data": { "retry_after": 60 } }"#,
    )
    .await;
    Expect::new(ErrorKind::RateLimited, true, 429)
        .code("rate_limit_exceeded")
        .message("Rate limit exceeded. Please try again later.")
        .hint(60.0, HintSource::Body)
        .check(&err);
}

#[tokio::test]
async fn aiapi_internal_server_error_500_retryable() {
    let err = error(
        500,
        &[],
        r#"{ "code": "internal_error", "message": "Temporary server failure", "data": null }"#,
    )
    .await;
    Expect::new(ErrorKind::Server, true, 500)
        .code("internal_error")
        .message("Temporary server failure")
        .check(&err);
}

#[tokio::test]
async fn aiapi_bad_gateway_502_retryable() {
    let err = error(
        502,
        &[],
        r#"{ "code": "bad_gateway", "message": "Upstream service temporarily unavailable", "data": null }"#,
    )
    .await;
    Expect::new(ErrorKind::Server, true, 502)
        .code("bad_gateway")
        .message("Upstream service temporarily unavailable")
        .check(&err);
}

#[tokio::test]
async fn aiapi_service_unavailable_503_retryable() {
    let err = error(
        503,
        &[],
        r#"{ "code": "service_unavailable", "message": "Service maintenance", "data": null }"#,
    )
    .await;
    Expect::new(ErrorKind::Server, true, 503)
        .code("service_unavailable")
        .message("Service maintenance")
        .check(&err);
}

#[tokio::test]
async fn aiapi_success_200_passes_untouched_with_snapshot() {
    let body = r#"{"id":"chatcmpl-1","choices":[{"message":{"content":"Hello"}}]}"#;
    let response = call(
        layer(false),
        200,
        &[
            ("content-type", "application/json"),
            ("X-RateLimit-Limit-Requests", "60"),
            ("X-RateLimit-Remaining-Requests", "59"),
            ("X-RateLimit-Reset-Requests", "1640995200"),
        ],
        body,
    )
    .await
    .unwrap();
    let snapshot = response
        .extensions()
        .get::<RateLimitSnapshot>()
        .copied()
        .unwrap();
    assert_eq!(snapshot.requests.remaining, Some(59));
    assert_eq!(snapshot.requests.reset, Some(Duration::from_secs(60)));
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, body.as_bytes());
}

#[tokio::test]
async fn aiapi_created_201_passes_untouched() {
    let body = r#"{"task_id":"abc123","status":"queued"}"#;
    let response = call(
        layer(false),
        201,
        &[("content-type", "application/json")],
        body,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.extensions().get::<RateLimitSnapshot>().is_none());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, body.as_bytes());
}
