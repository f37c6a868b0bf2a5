//! `towline classify` run as a process: one JSON object with every contract field, for the
//! seed dialects (kimi-free-api's HTTP-200 form included), and one-line errors for bad input.

mod support;

use serde_json::{Value, json};
use support::towline;

/// Runs `towline classify args...` and returns its JSON object.
async fn classify(args: &[&str]) -> Value {
    let mut all = vec!["classify"];
    all.extend_from_slice(args);
    let run = towline(&all).await;
    let value: Value = serde_json::from_str(run.success()).expect("classify prints JSON");
    let fields = value.as_object().expect("one JSON object");
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "kind",
            "message",
            "provider_code",
            "provider_type",
            "request_id",
            "retry_after_ms",
            "retryable",
            "status",
            "user_message",
        ],
        "exactly the contract's fields"
    );
    value
}

/// Moonshot's ambiguous 429, the rate-limit meaning, with its hint and request id headers.
#[tokio::test]
async fn moonshot_rate_limit_has_every_field() {
    let body = r#"{"error":{"message":"Your account org-1 request reached max RPM: 3, please try again after 1 seconds","type":"rate_limit_reached_error"}}"#;
    let value = classify(&[
        "--status",
        "429",
        "--header",
        "Retry-After: 3",
        "--header",
        "x-request-id: req-7f3a",
        "--body",
        body,
    ])
    .await;
    let user_message = value["user_message"].as_str().expect("a user message");
    assert!(!user_message.is_empty());
    assert_eq!(
        value,
        json!({
            "kind": "rate_limited",
            "retryable": true,
            "retry_after_ms": 3000,
            "status": 429,
            "provider_type": "rate_limit_reached_error",
            "provider_code": null,
            "message": "Your account org-1 request reached max RPM: 3, please try again after 1 seconds",
            "request_id": "req-7f3a",
            "user_message": user_message,
        })
    );
}

/// The same status, the quota meaning: never retryable.
#[tokio::test]
async fn moonshot_quota_429_is_final() {
    let body = r#"{"error":{"message":"Your account is not active or has exceeded the current quota.","type":"exceeded_current_quota_error"}}"#;
    let value = classify(&["--status", "429", "--body", body]).await;
    assert_eq!(value["kind"], "quota_exhausted");
    assert_eq!(value["retryable"], false);
    assert_eq!(value["provider_type"], "exceeded_current_quota_error");
}

/// kimi-free-api as its server really answers: HTTP 200 with a negative `code`.
#[tokio::test]
async fn kimi_free_api_http_200_errors_are_errors() {
    let expired = r#"{"code":-2002,"message":"Token expired","data":null}"#;
    // With and without the content type a user may or may not paste.
    for headers in [&["--header", "content-type: application/json"][..], &[]] {
        let mut args = vec!["--status", "200", "--body", expired];
        args.extend_from_slice(headers);
        let value = classify(&args).await;
        assert_eq!(value["kind"], "authentication", "{headers:?}");
        assert_eq!(value["status"], 200);
        assert_eq!(value["provider_code"], "-2002");
        assert_eq!(value["message"], "Token expired");
        assert_eq!(value["retryable"], false);
    }
    // -2005: a stream is already being pushed for this conversation; retryable.
    let busy = r#"{"code":-2005,"message":"已有对话流正在输出","data":null}"#;
    let value = classify(&["--status", "200", "--body", busy]).await;
    assert_eq!(value["kind"], "rate_limited");
    assert_eq!(value["retryable"], true);
}

/// kimi-free-api as its article documents it: `errcode` with a 4xx.
#[tokio::test]
async fn kimi_free_api_documented_form() {
    let body = r#"{"errcode":-2006,"errmsg":"research quota reached","data":null}"#;
    let value = classify(&["--status", "429", "--body", body]).await;
    assert_eq!(value["kind"], "quota_exhausted");
    assert_eq!(value["provider_code"], "-2006");
    assert_eq!(value["retryable"], false);
}

/// Kaiko V2 from a file: its request id is in the body.
#[tokio::test]
async fn kaiko_conflict_from_a_body_file() {
    let body = r#"{"error":{"type":"conflict_error","code":"duplicate_id","message":"A resource with this ID already exists","param":"id","request_id":"req_kaiko_123"}}"#;
    let path = std::env::temp_dir().join(format!("towline-classify-{}.json", std::process::id()));
    std::fs::write(&path, body).unwrap();
    let value = classify(&["--status", "409", "--body-file", path.to_str().unwrap()]).await;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(value["kind"], "conflict");
    assert_eq!(value["retryable"], true);
    assert_eq!(value["provider_type"], "conflict_error");
    assert_eq!(value["provider_code"], "duplicate_id");
    assert_eq!(value["request_id"], "req_kaiko_123");
}

/// MiMo and aiapi.services: quota answers in their own words.
#[tokio::test]
async fn mimo_and_aiapi_quota() {
    let mimo = r#"{"error":{"code":"insufficient_balance","message":"Insufficient account balance","type":"error"}}"#;
    let value = classify(&["--status", "402", "--body", mimo]).await;
    assert_eq!(value["kind"], "quota_exhausted");
    let aiapi = r#"{"code":"quota_not_enough","message":"user quota is not enough","data":null}"#;
    let value = classify(&["--status", "403", "--body", aiapi]).await;
    assert_eq!(value["kind"], "quota_exhausted");
    assert_eq!(value["provider_code"], "quota_not_enough");
    assert_eq!(value["retryable"], false);
}

/// A success is no error: every error field null.
#[tokio::test]
async fn a_success_is_not_an_error() {
    let value = classify(&["--status", "200", "--body", r#"{"choices":[]}"#]).await;
    assert_eq!(
        value,
        json!({
            "kind": null,
            "retryable": false,
            "retry_after_ms": null,
            "status": 200,
            "provider_type": null,
            "provider_code": null,
            "message": null,
            "request_id": null,
            "user_message": null,
        })
    );
}

#[tokio::test]
async fn bad_input_is_one_line_error() {
    let cases: &[&[&str]] = &[
        &[],
        &["--status", "99"],
        &["--status", "abc"],
        &["--status", "429", "--header", "no colon"],
        &["--status", "429", "--header", "bad name: v"],
        &[
            "--status",
            "429",
            "--body-file",
            "/nonexistent/towline-body.json",
        ],
        &["--status", "429", "--body", "{}", "--body-file", "x.json"],
    ];
    for case in cases {
        let mut all = vec!["classify"];
        all.extend_from_slice(case);
        towline(&all).await.one_line_error(2);
    }
}
