//! Every dialect, byte for byte: the seed documents' examples against `render`, and what goes
//! over the wire against `render`.

mod support;

use std::time::{Duration, UNIX_EPOCH};

use towline_core::ErrorKind;
use towline_mock::{
    Dialect, ErrorSpec, Fault, HintForm, MockProvider, RetryAfter, Script, is_renderable, render,
    render_at, stream_error_event,
};

use support::{Chat, chat, client, minify};

fn body(dialect: Dialect, spec: ErrorSpec) -> String {
    String::from_utf8(render(dialect, &spec).body.to_vec()).unwrap()
}

fn status(dialect: Dialect, spec: ErrorSpec) -> u16 {
    render(dialect, &spec).status.as_u16()
}

// ---- Moonshot / Kimi: seeds/000_882d7ab8bcd4b7ed.txt --------------------------------------

#[test]
fn moonshot_matches_the_seed_examples() {
    let d = Dialect::Moonshot;
    let auth = "{\n\"error\": {\n\"message\": \"Invalid Authentication\",\n\"type\": \"invalid_authentication_error\"\n}\n}";
    assert_eq!(body(d, ErrorKind::Authentication.into()), minify(auth));
    assert_eq!(status(d, ErrorKind::Authentication.into()), 401);

    let filter = "{\n\"error\": {\n\"type\": \"content_filter\",\n\"message\": \"The request was rejected because it was considered high risk\"\n}\n}";
    assert_eq!(body(d, ErrorKind::ContentFiltered.into()), minify(filter));
    assert_eq!(status(d, ErrorKind::ContentFiltered.into()), 400);

    let quota_403 = "{\"error\":{\n\"message\":\"Your account <ID> is not active, organization <ORG> exceeded current quota, please check your plan and billing details\",\n\"type\":\"exceeded_current_quota_error\"\n}}";
    let spec = ErrorSpec::new(ErrorKind::QuotaExhausted).status(403);
    assert_eq!(body(d, spec.clone()), minify(quota_403));
    assert_eq!(status(d, spec), 403);

    let quota_429 = "{\n\"error\": {\n\"type\": \"exceeded_current_quota_error\",\n\"message\": \"Your account is not active or has exceeded the current quota. Please check your plan and billing details.\"\n}\n}";
    assert_eq!(body(d, ErrorKind::QuotaExhausted.into()), minify(quota_429));
    assert_eq!(status(d, ErrorKind::QuotaExhausted.into()), 429);

    // Named in the seed without a full example.
    let context = body(d, ErrorKind::ContextLengthExceeded.into());
    assert_eq!(
        context,
        r#"{"error":{"message":"Input token length too long","type":"invalid_request_error"}}"#
    );
    assert!(
        body(d, ErrorKind::RateLimited.into()).contains("\"type\":\"rate_limit_reached_error\"")
    );
    assert!(body(d, ErrorKind::Overloaded.into()).contains("\"type\":\"engine_overloaded_error\""));
    assert!(body(d, ErrorKind::NotFound.into()).contains("\"type\":\"resource_not_found_error\""));
    assert!(body(d, ErrorSpec::new(ErrorKind::Server).status(503)).contains("server_unavailable"));
}

// ---- Kaiko V2: seeds/001_057d347706ad9743.txt -----------------------------------------------

#[test]
fn kaiko_matches_the_seed_example_and_table() {
    let d = Dialect::KaikoV2;
    let example = r#"{
  "error": {
    "type": "invalid_request_error",
    "code": "missing_field",
    "message": "The 'messages' field is required",
    "param": "messages",
    "request_id": "req-7f65ab21d1"
  }
}"#;
    let spec = ErrorSpec::new(ErrorKind::InvalidRequest).request_id("req-7f65ab21d1");
    assert_eq!(body(d, spec.clone()), minify(example));
    let rendered = render(d, &spec);
    assert_eq!(rendered.status, 400);
    assert_eq!(rendered.headers["x-request-id"], "req-7f65ab21d1");

    // The seed's table: status, type, example code.
    let table = [
        (
            ErrorSpec::new(ErrorKind::Authentication),
            401,
            "authentication_error",
            "invalid_api_key",
        ),
        (
            ErrorSpec::new(ErrorKind::PermissionDenied),
            403,
            "forbidden_error",
            "key_revoked",
        ),
        (
            ErrorSpec::new(ErrorKind::NotFound),
            404,
            "not_found_error",
            "context_not_found",
        ),
        (
            ErrorSpec::new(ErrorKind::Conflict),
            409,
            "conflict_error",
            "duplicate_id",
        ),
        (
            ErrorSpec::new(ErrorKind::PayloadTooLarge),
            413,
            "invalid_request_error",
            "payload_too_large",
        ),
        (
            ErrorSpec::new(ErrorKind::InvalidRequest).status(422),
            422,
            "invalid_request_error",
            "invalid_role",
        ),
        (
            ErrorSpec::new(ErrorKind::RateLimited),
            429,
            "rate_limit_error",
            "too_many_requests",
        ),
        (
            ErrorSpec::new(ErrorKind::Server),
            500,
            "server_error",
            "internal",
        ),
        (
            ErrorSpec::new(ErrorKind::Server).status(503),
            503,
            "server_error",
            "service_unavailable",
        ),
    ];
    for (spec, want_status, want_type, want_code) in table {
        let r = render(d, &spec);
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(r.status, want_status, "{spec:?}");
        assert_eq!(json["error"]["type"], want_type, "{spec:?}");
        assert_eq!(json["error"]["code"], want_code, "{spec:?}");
        assert!(json["error"]["request_id"].is_null());
    }
    // A 429 carries Retry-After and X-RateLimit-Remaining.
    let limited = render(
        d,
        &ErrorSpec::new(ErrorKind::RateLimited).retry_after(RetryAfter::secs(30)),
    );
    assert_eq!(limited.headers["retry-after"], "30");
    assert_eq!(limited.headers["x-ratelimit-remaining"], "0");
}

// ---- kimi-free-api: seeds/002_36b044845184e898.txt -------------------------------------------

#[test]
fn kimi_free_api_documented_form_matches_the_article() {
    let d = Dialect::KimiFreeApiDocumented;
    // The article's example response format: { errcode: -2002, errmsg: Token已失效, data: null }
    assert_eq!(
        body(d, ErrorKind::Authentication.into()),
        r#"{"errcode":-2002,"errmsg":"Token已失效","data":null}"#
    );
    assert_eq!(status(d, ErrorKind::Authentication.into()), 401);
    // Its global error handler: errcode -1000, errmsg 系统异常请稍后重试, with a 500.
    assert_eq!(
        body(d, ErrorKind::Server.into()),
        r#"{"errcode":-1000,"errmsg":"系统异常请稍后重试","data":null}"#
    );
    assert_eq!(status(d, ErrorKind::Server.into()), 500);
    // Its symptoms: -1001 with 400, -1002 with 404, -2005 with 429, -2004 with 413.
    for (kind, code, status_code) in [
        (ErrorKind::InvalidRequest, -1001, 400),
        (ErrorKind::NotFound, -1002, 404),
        (ErrorKind::RateLimited, -2005, 429),
        (ErrorKind::PayloadTooLarge, -2004, 413),
        (ErrorKind::QuotaExhausted, -2006, 429),
    ] {
        let r = render(d, &kind.into());
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(json["errcode"], code, "{kind}");
        assert_eq!(r.status, status_code, "{kind}");
    }
}

#[test]
fn kimi_free_api_real_form_is_http_200_with_a_negative_code() {
    let d = Dialect::KimiFreeApi;
    let busy = render(d, &ErrorKind::RateLimited.into());
    assert_eq!(busy.status, 200);
    assert_eq!(
        busy.body,
        r#"{"code":-2005,"message":"已有对话流正在输出","data":null}"#
    );
    let failed = render(d, &ErrorSpec::new(ErrorKind::Server).code("-2001"));
    assert_eq!(
        failed.body,
        r#"{"code":-2001,"message":"请求失败","data":null}"#
    );
    assert_eq!(
        body(d, ErrorKind::Server.into()),
        r#"{"code":-1000,"message":"系统异常","data":null}"#
    );
    assert_eq!(
        body(d, ErrorKind::Authentication.into()),
        r#"{"code":-2002,"message":"Token已失效","data":null}"#
    );
}

// ---- Xiaomi MiMo: seeds/003_98e8ae098453e203.txt ---------------------------------------------

#[test]
fn mimo_matches_the_seed_example_and_table() {
    let d = Dialect::Mimo;
    let example = "{\n\"error\": {\n\"code\": \"authentication_failed\",\n\"message\": \"Invalid API Key provided.\",\n\"type\": \"error\"\n}\n}";
    assert_eq!(body(d, ErrorKind::Authentication.into()), minify(example));
    for (kind, want_status, want_code, want_message) in [
        (
            ErrorKind::InvalidRequest,
            400,
            "invalid_request",
            "The request body is malformed or missing required fields",
        ),
        (
            ErrorKind::PermissionDenied,
            403,
            "permission_denied",
            "Your account does not have access to this resource",
        ),
        (
            ErrorKind::NotFound,
            404,
            "not_found",
            "The requested resource does not exist",
        ),
        (
            ErrorKind::RateLimited,
            429,
            "rate_limit_exceeded",
            "Too many requests, rate limit exceeded",
        ),
        (
            ErrorKind::Server,
            500,
            "internal_error",
            "Server internal error",
        ),
        (
            ErrorKind::Overloaded,
            503,
            "service_unavailable",
            "Service temporarily unavailable due to high load",
        ),
        (
            ErrorKind::QuotaExhausted,
            402,
            "insufficient_balance",
            "Insufficient account balance",
        ),
        (
            ErrorKind::ContentFiltered,
            421,
            "content_filter",
            "The content was rejected by the content security policy",
        ),
    ] {
        let r = render(d, &kind.into());
        assert_eq!(r.status, want_status, "{kind}");
        assert_eq!(
            r.body,
            format!(
                r#"{{"error":{{"code":"{want_code}","message":"{want_message}","type":"error"}}}}"#
            ),
            "{kind}"
        );
    }
}

// ---- aiapi.services: seeds/004_2b77714649716480.txt ------------------------------------------

#[test]
fn aiapi_matches_the_seed_examples() {
    let d = Dialect::Aiapi;
    let examples = [
        (
            ErrorSpec::new(ErrorKind::QuotaExhausted),
            403,
            r#"{ "code": "quota_not_enough", "message": "user quota is not enough", "data": null }"#,
        ),
        (
            ErrorSpec::new(ErrorKind::Authentication),
            401,
            r#"{ "code": "invalid_api_key", "message": "Invalid API key provided", "data": null }"#,
        ),
        (
            ErrorSpec::new(ErrorKind::NotFound),
            404,
            r#"{ "code": "model_not_found", "message": "model 'invalid-model-name' not found", "data": null }"#,
        ),
        (
            ErrorSpec::new(ErrorKind::InvalidRequest),
            400,
            r#"{ "code": "invalid_request_error", "message": "Invalid parameter: max_tokens must be a positive integer", "data": null }"#,
        ),
        (
            ErrorSpec::new(ErrorKind::ContentFiltered),
            400,
            r#"{ "code": "content_filtered", "message": "Your request was rejected due to content policy", "data": { "reason": "inappropriate_content" } }"#,
        ),
    ];
    for (spec, want_status, example) in examples {
        let r = render(d, &spec);
        assert_eq!(r.status, want_status, "{spec:?}");
        assert_eq!(r.body, minify(example), "{spec:?}");
    }
}

#[test]
fn aiapi_rate_limit_matches_the_seed_body_and_headers() {
    // The seed's reset (1640995200) is 60 s after this instant.
    let now = UNIX_EPOCH + Duration::from_secs(1_640_995_140);
    let spec = ErrorSpec::new(ErrorKind::RateLimited).retry_after(RetryAfter::secs(60));
    let r = render_at(Dialect::Aiapi, &spec, now);
    assert_eq!(r.status, 429);
    let example = r#"{ "code": "rate_limit_exceeded", "message": "Rate limit exceeded. Please try again later.", "data": { "retry_after": 60 } }"#;
    assert_eq!(r.body, minify(example));
    // X-RateLimit-Limit-Requests: 60 X-RateLimit-Remaining-Requests: 0
    // X-RateLimit-Reset-Requests: 1640995200 Retry-After: 60
    assert_eq!(r.headers["x-ratelimit-limit-requests"], "60");
    assert_eq!(r.headers["x-ratelimit-remaining-requests"], "0");
    assert_eq!(r.headers["x-ratelimit-reset-requests"], "1640995200");
    assert_eq!(r.headers["retry-after"], "60");
    assert_eq!(r.hint, Some(Duration::from_secs(60)));
}

// ---- The dialects the seeds do not cover: provider-dialects.md -------------------------------

#[test]
fn openai_anthropic_and_gemini_have_their_documented_shapes() {
    let openai = body(Dialect::OpenAi, ErrorKind::QuotaExhausted.into());
    assert!(
        openai.starts_with(r#"{"error":{"message":"You exceeded your current quota"#),
        "{openai}"
    );
    assert!(
        openai
            .ends_with(r#""type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#),
        "{openai}"
    );
    let context = body(Dialect::OpenAi, ErrorKind::ContextLengthExceeded.into());
    assert!(context.ends_with(r#""param":"messages","code":"context_length_exceeded"}}"#));

    let overloaded = render(
        Dialect::Anthropic,
        &ErrorSpec::new(ErrorKind::Overloaded).request_id("req_011CSHoEeqs5C35K2UUqR7Fy"),
    );
    assert_eq!(overloaded.status, 529);
    assert_eq!(
        overloaded.body,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#
    );
    assert_eq!(
        overloaded.headers["request-id"],
        "req_011CSHoEeqs5C35K2UUqR7Fy"
    );
    assert_eq!(
        status(Dialect::Anthropic, ErrorKind::QuotaExhausted.into()),
        402
    );
    assert!(body(Dialect::Anthropic, ErrorKind::QuotaExhausted.into()).contains("billing_error"));

    let limited = render(
        Dialect::Gemini,
        &ErrorSpec::new(ErrorKind::RateLimited).retry_after(RetryAfter::secs(26)),
    );
    assert_eq!(limited.status, 429);
    assert!(
        limited.headers.get("retry-after").is_none(),
        "Gemini hints in the body"
    );
    assert_eq!(limited.hint, Some(Duration::from_secs(26)));
    assert_eq!(
        limited.body,
        concat!(
            r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED","details":["#,
            r#"{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaValue":"10"}]},"#,
            r#"{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"26s"}]}}"#
        )
    );
    let daily = body(Dialect::Gemini, ErrorKind::QuotaExhausted.into());
    assert!(daily.contains("PerDay"), "{daily}");
}

#[test]
fn hint_forms_render_the_right_headers() {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let with = |form| {
        render_at(
            Dialect::OpenAi,
            &ErrorSpec::new(ErrorKind::RateLimited)
                .retry_after(RetryAfter::millis(1500).form(form)),
            now,
        )
    };
    let seconds = with(HintForm::Seconds);
    assert_eq!(seconds.headers["retry-after"], "2");
    assert!(seconds.headers.get("retry-after-ms").is_none());
    assert_eq!(seconds.hint, Some(Duration::from_secs(2)));

    let ms = with(HintForm::Millis);
    assert_eq!(ms.headers["retry-after-ms"], "1500");
    assert!(ms.headers.get("retry-after").is_none());
    assert_eq!(ms.hint, Some(Duration::from_millis(1500)));

    let date = with(HintForm::HttpDate);
    assert_eq!(date.headers["retry-after"], "Tue, 14 Nov 2023 22:13:22 GMT");
    assert_eq!(date.hint, Some(Duration::from_secs(2)));

    let should = render(
        Dialect::OpenAi,
        &ErrorSpec::new(ErrorKind::ContentFiltered).should_retry(true),
    );
    assert_eq!(should.headers["x-should-retry"], "true");
}

// ---- Over the wire ---------------------------------------------------------------------------

/// For every dialect and every class a provider can send, the bytes on the wire are `render`'s.
#[tokio::test]
async fn the_wire_carries_exactly_what_render_renders() {
    let kinds: Vec<ErrorKind> = ErrorKind::ALL
        .into_iter()
        .filter(|k| is_renderable(*k))
        .collect();
    let mut builder = MockProvider::builder();
    for dialect in Dialect::ALL {
        for kind in &kinds {
            let key = format!("sk-{dialect}-{kind}");
            let spec = ErrorSpec::new(*kind).should_retry(false);
            builder = builder.key(key, Script::new(dialect).fault(Fault::error(spec)));
        }
    }
    let server = builder.start().await.unwrap();
    let client = client();
    for dialect in Dialect::ALL {
        for kind in &kinds {
            let key = format!("sk-{dialect}-{kind}");
            let reply = chat(&client, &server, &Chat::key(&key)).await;
            let id = reply
                .header(dialect.request_id_header())
                .expect("a request id")
                .to_owned();
            let want = render(
                dialect,
                &ErrorSpec::new(*kind).should_retry(false).request_id(id),
            );
            assert_eq!(reply.status, want.status, "{dialect} {kind}");
            assert_eq!(reply.body, want.body, "{dialect} {kind}");
            for (name, value) in &want.headers {
                assert_eq!(
                    reply.headers.get(name),
                    Some(value),
                    "{dialect} {kind} {name}"
                );
            }
        }
    }
    assert_eq!(server.journal().total(), Dialect::ALL.len() * kinds.len());
}

/// A broken stream ends with the dialect's in-band error event, after the content delivered.
#[tokio::test]
async fn broken_streams_end_with_the_dialects_error_event() {
    let mut builder = MockProvider::builder();
    for dialect in Dialect::ALL {
        builder = builder.key(
            format!("sk-{dialect}"),
            Script::new(dialect).fault(Fault::break_stream(2, ErrorKind::Overloaded)),
        );
    }
    let server = builder.start().await.unwrap();
    let client = client();
    for dialect in Dialect::ALL {
        let key = format!("sk-{dialect}");
        let reply = chat(&client, &server, &Chat::key(&key).stream()).await;
        assert_eq!(reply.status, 200, "{dialect}");
        assert_eq!(reply.header("content-type"), Some("text/event-stream"));
        let id = reply
            .header(dialect.request_id_header())
            .unwrap()
            .to_owned();
        let event = stream_error_event(
            dialect,
            &render(
                dialect,
                &ErrorSpec::new(ErrorKind::Overloaded).request_id(id),
            ),
        );
        assert!(reply.body.ends_with(&event), "{dialect}: {}", reply.text());
        let events = reply.events();
        assert_eq!(
            events.len(),
            4,
            "role, two content chunks, the error: {events:?}"
        );
        assert!(!reply.text().contains("[DONE]"));
    }
}
