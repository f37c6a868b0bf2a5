//! Scripts as data: JSON and TOML loading, round trips, and validation errors that name the
//! field.

use std::time::Duration;

use towline_core::ErrorKind;
use towline_mock::{
    Dialect, ErrorSpec, Fault, HintForm, MockProvider, RateLimit, RetryAfter, Scenario, Script,
};

/// The same scenario, written in Rust.
fn rich() -> Scenario {
    Scenario::new()
        .seed(42)
        .models(["kimi-k2", "moonshot-v1-8k"])
        .default_script(
            Script::new(Dialect::OpenAi)
                .latency(Duration::from_millis(5))
                .fault(Fault::server_error().probability(0.05))
                .fault(Fault::outage(
                    Duration::from_secs(2),
                    Duration::from_secs(5),
                )),
        )
        .key(
            "sk-limited",
            Script::new(Dialect::Moonshot)
                .rate_limit(RateLimit::token_bucket(10.0, 2).hint_form(HintForm::Millis))
                .fault(
                    Fault::rate_limited(RetryAfter::millis(1500).form(HintForm::HttpDate)).first(2),
                )
                .fault(
                    Fault::error(ErrorSpec::new(ErrorKind::QuotaExhausted).status(403)).after(10),
                ),
        )
        .session(
            "s1",
            Script::new(Dialect::KimiFreeApi)
                .session_busy(true)
                .chunks(6)
                .chunk_interval(Duration::from_millis(20))
                .fault(Fault::break_stream(2, ErrorKind::Overloaded).stream(true))
                .fault(Fault::cut_stream(3).probability(0.1)),
        )
        .key_session(
            "sk-limited",
            "s2",
            Script::new(Dialect::Anthropic)
                .request_ids(false)
                .reply("ok")
                .rate_limit(
                    RateLimit::fixed_window(5, Duration::from_secs(1)).success_headers(true),
                )
                .fault(Fault::stall_headers().first(1))
                .fault(Fault::reset().first(2))
                .fault(Fault::stall_body(1).latency(Duration::from_millis(250)))
                .fault(
                    Fault::error(
                        ErrorSpec::new(ErrorKind::Server)
                            .message("boom")
                            .code("api_error")
                            .should_retry(false),
                    )
                    .starting_at(Duration::from_secs(1)),
                ),
        )
}

const RICH_TOML: &str = r#"
seed = 42
models = ["kimi-k2", "moonshot-v1-8k"]

[default]
dialect = "openai"
latency_ms = 5
faults = [
  { class = "server", p = 0.05 },
  { class = "server", status = 503, from_ms = 2000, until_ms = 5000 },
]

[[scripts]]
key = "sk-limited"
dialect = "moonshot"
rate_limit = { rate = 10.0, burst = 2, hint_form = "ms" }

[[scripts.faults]]
class = "rate_limited"
first = 2
retry_after = { ms = 1500, form = "http_date" }

[[scripts.faults]]
fault = "error"
class = "quota_exhausted"
status = 403
after = 10

[[scripts]]
session = "s1"
dialect = "kimi-free-api"
session_busy = true
chunks = 6
chunk_interval_ms = 20
faults = [
  { fault = "break_stream", after_chunks = 2, class = "overloaded", stream = true },
  { fault = "cut_stream", after_chunks = 3, p = 0.1 },
]

[[scripts]]
key = "sk-limited"
session = "s2"
dialect = "anthropic"
request_ids = false
reply = "ok"
rate_limit = { limit = 5, window_ms = 1000, success_headers = true }
faults = [
  { fault = "stall_headers", first = 1 },
  { fault = "reset", first = 2 },
  { fault = "stall_body", after_chunks = 1, latency_ms = 250 },
  { class = "server", message = "boom", code = "api_error", should_retry = false, from_ms = 1000 },
]
"#;

const RICH_JSON: &str = r#"{
  "seed": 42,
  "models": ["kimi-k2", "moonshot-v1-8k"],
  "default": {
    "dialect": "openai",
    "latency_ms": 5,
    "faults": [
      {"class": "server", "p": 0.05},
      {"class": "server", "status": 503, "from_ms": 2000, "until_ms": 5000}
    ]
  },
  "scripts": [
    {
      "key": "sk-limited",
      "dialect": "moonshot",
      "rate_limit": {"rate": 10, "burst": 2, "hint_form": "ms"},
      "faults": [
        {"class": "rate_limited", "first": 2, "retry_after": {"ms": 1500, "form": "http_date"}},
        {"fault": "error", "class": "quota_exhausted", "status": 403, "after": 10}
      ]
    },
    {
      "session": "s1",
      "dialect": "kimi_free_api",
      "session_busy": true,
      "chunks": 6,
      "chunk_interval_ms": 20,
      "faults": [
        {"fault": "break_stream", "after_chunks": 2, "class": "overloaded", "stream": true},
        {"fault": "cut_stream", "after_chunks": 3, "p": 0.1}
      ]
    },
    {
      "key": "sk-limited",
      "session": "s2",
      "dialect": "anthropic",
      "request_ids": false,
      "reply": "ok",
      "rate_limit": {"limit": 5, "window_ms": 1000, "success_headers": true},
      "faults": [
        {"fault": "stall_headers", "first": 1},
        {"fault": "reset", "first": 2},
        {"fault": "stall_body", "after_chunks": 1, "latency_ms": 250},
        {"class": "server", "message": "boom", "code": "api_error", "should_retry": false, "from_ms": 1000}
      ]
    }
  ]
}"#;

#[test]
fn json_toml_and_rust_describe_the_same_scenario() {
    let toml = Scenario::from_toml_str(RICH_TOML).unwrap();
    let json = Scenario::from_json_str(RICH_JSON).unwrap();
    assert_eq!(toml, rich());
    assert_eq!(json, rich());
}

#[test]
fn scenarios_round_trip_through_both_formats() {
    let scenario = rich()
        .key(
            "sk-raw",
            Script::default().fault(Fault::raw(502, [("content-type", "text/html")], "<html/>")),
        )
        .key(
            "sk-big",
            Script::default().fault(Fault::oversized_body(500, 1 << 30)),
        )
        .key(
            "sk-endless",
            Script::default().fault(Fault::endless_stream(Duration::from_millis(1500))),
        );
    let json = scenario.to_json_string();
    assert_eq!(Scenario::from_json_str(&json).unwrap(), scenario, "{json}");
    let toml = scenario.to_toml_string();
    assert_eq!(Scenario::from_toml_str(&toml).unwrap(), scenario, "{toml}");
    // Serde, for scenarios embedded in other configuration.
    let value = serde_json::to_value(&scenario).unwrap();
    let back: Scenario = serde_json::from_value(value).unwrap();
    assert_eq!(back, scenario);
}

#[test]
fn scenarios_load_from_files_by_extension() {
    let dir = std::env::temp_dir().join(format!("towline-mock-scripts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml_path = dir.join("scenario.toml");
    let json_path = dir.join("scenario.json");
    std::fs::write(&toml_path, RICH_TOML).unwrap();
    std::fs::write(&json_path, RICH_JSON).unwrap();
    assert_eq!(Scenario::from_file(&toml_path).unwrap(), rich());
    assert_eq!(Scenario::from_file(&json_path).unwrap(), rich());
    let missing = Scenario::from_file(dir.join("missing.toml")).unwrap_err();
    assert!(missing.message().starts_with("cannot read"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_bundled_mixed_scenario_is_valid() {
    let mixed = Scenario::mixed();
    assert_eq!(mixed.seed_value(), 7);
    assert!(mixed.default_script_ref().fault_list().len() >= 4);
    MockProvider::new(mixed).unwrap();
}

/// A TOML scenario that must be refused, the field the error must name, and a word of the
/// message.
fn refused(toml: &str, field: &str, says: &str) {
    let err = Scenario::from_toml_str(toml).unwrap_err();
    assert_eq!(err.field(), field, "{toml}\n{err}");
    assert!(err.message().contains(says), "{toml}\n{err}");
    assert!(err.to_string().contains(field));
}

#[test]
fn bad_values_are_refused_with_the_field_named() {
    refused(
        "[default]\ndialect = \"kimi2\"",
        "default.dialect",
        "unknown dialect `kimi2`",
    );
    refused(
        "[default]\nlatency_ms = -5",
        "default.latency_ms",
        "non-negative",
    );
    refused(
        "[default]\nfaults = [{ class = \"server\", p = 1.5 }]",
        "default.faults[0].p",
        "within [0, 1], got 1.5",
    );
    refused(
        "[default]\nfaults = [{ class = \"server\", p = -0.1 }]",
        "default.faults[0].p",
        "probability",
    );
    refused(
        "[default]\nfaults = [{ class = \"throttled\" }]",
        "default.faults[0].class",
        "not an error a provider can send",
    );
    refused(
        "[default]\nfaults = [{ class = \"transport\" }]",
        "default.faults[0].class",
        "fault `reset`",
    );
    refused(
        "[default]\nfaults = [{ class = \"slow\" }]",
        "default.faults[0].class",
        "unknown error class `slow`",
    );
    refused(
        "[default]\nfaults = [{ class = \"server\", status = 200 }]",
        "default.faults[0].status",
        "400..=599",
    );
    refused(
        "[default]\nfaults = [{ class = \"server\", first = 0 }]",
        "default.faults[0].first",
        "at least 1",
    );
    refused(
        "[default]\nfaults = [{ class = \"server\", first = -1 }]",
        "default.faults[0].first",
        "-1",
    );
    refused(
        "[default]\nfaults = [{ class = \"server\", from_ms = 3000, until_ms = 1000 }]",
        "default.faults[0].until_ms",
        "after `from_ms`",
    );
    refused(
        "[default]\nrate_limit = { rate = 0.0, burst = 2 }",
        "default.rate_limit.rate",
        "positive",
    );
    refused(
        "[default]\nrate_limit = { rate = 5.0, burst = 0 }",
        "default.rate_limit.burst",
        "at least 1",
    );
    refused(
        "[default]\nrate_limit = { rate = 5.0, limit = 5, window_ms = 1000 }",
        "default.rate_limit.limit",
        "not both",
    );
    refused(
        "[default]\nrate_limit = { limit = 5, window_ms = 0 }",
        "default.rate_limit.window_ms",
        "longer than 0",
    );
    refused("[default]\nchunks = 0", "default.chunks", "at least 1");
    refused(
        "[default]\nchunks = 2\nfaults = [{ fault = \"cut_stream\", after_chunks = 3 }]",
        "default.faults[0].after_chunks",
        "more than the script's 2 chunks",
    );
    refused(
        "[default]\ndialect = \"kimi_free_api\"\nfaults = [{ class = \"server\", code = \"oops\" }]",
        "default.faults[0].code",
        "integer",
    );
    refused(
        "[default]\nfaults = [{ fault = \"raw\", body = \"x\" }]",
        "default.faults[0].status",
        "needs it",
    );
    refused(
        "[default]\nfaults = [{ fault = \"endless_stream\", interval_ms = 0 }]",
        "default.faults[0].interval_ms",
        "longer than 0",
    );
}

#[test]
fn misplaced_and_unknown_fields_are_refused() {
    refused(
        "[default]\nfaults = [{ class = \"server\", after_chunks = 2 }]",
        "default.faults[0].after_chunks",
        "not used by fault `error`",
    );
    refused(
        "[default]\nfaults = [{ fault = \"reset\", retry_after = { ms = 5 } }]",
        "default.faults[0].retry_after",
        "not used by fault `reset`",
    );
    refused(
        "[default]\nfaults = [{ first = 2 }]",
        "default.faults[0].fault",
        "name the fault",
    );
    refused(
        "[default]\nfaults = [{ fault = \"explode\" }]",
        "default.faults[0].fault",
        "unknown variant `explode`",
    );
    refused(
        "[default]\nlatncy_ms = 5",
        "default.latncy_ms",
        "unknown field `latncy_ms`, expected one of",
    );
    refused("[default]\nkey = \"sk-1\"", "default.key", "scripts");
    refused(
        "[[scripts]]\ndialect = \"openai\"",
        "scripts[0]",
        "give `key`, `session` or both",
    );
    refused(
        "[[scripts]]\nkey = \"\"",
        "scripts[0].key",
        "must not be empty",
    );
    refused(
        "[[scripts]]\nkey = \"sk-1\"\n[[scripts]]\nkey = \"sk-2\"\n[[scripts]]\nkey = \"sk-1\"",
        "scripts[2]",
        "same key and session as `scripts[0]`",
    );
    let err = Scenario::from_toml_str("[default\n").unwrap_err();
    assert_eq!(err.field(), "");
    assert!(
        err.message().contains("invalid TOML") && err.message().contains("line 1"),
        "{err}"
    );
}

#[test]
fn json_errors_name_the_field_too() {
    let err =
        Scenario::from_json_str(r#"{"scripts": [{"key": "sk-1", "latency_ms": -1}]}"#).unwrap_err();
    assert_eq!(err.field(), "scripts[0].latency_ms");
    assert!(err.message().contains("non-negative"), "{err}");
    let err = Scenario::from_json_str(r#"{"default": {"dialect": 3}}"#).unwrap_err();
    assert_eq!(err.field(), "default.dialect");
    let err = Scenario::from_json_str("{").unwrap_err();
    assert!(err.message().contains("EOF"), "{err}");
}

#[test]
fn errors_never_show_the_key() {
    let err = Scenario::new()
        .key("sk-secret-123", Script::default())
        .key("sk-secret-123", Script::default())
        .validate()
        .unwrap_err();
    assert_eq!(err.field(), "scripts[1]");
    assert!(!err.to_string().contains("secret"), "{err}");
    let debug = format!(
        "{:?}",
        Scenario::new().key("sk-secret-123", Script::default())
    );
    assert!(!debug.contains("secret"), "{debug}");
}

#[test]
fn scripts_built_in_rust_are_validated_the_same_way() {
    let p = Scenario::new()
        .default_script(Script::default().fault(Fault::server_error().probability(2.0)));
    assert_eq!(p.validate().unwrap_err().field(), "default.faults[0].p");
    let local = Scenario::new().session(
        "s1",
        Script::default().fault(Fault::error(ErrorKind::CircuitOpen)),
    );
    assert_eq!(
        local.validate().unwrap_err().field(),
        "scripts[0].faults[0].class"
    );
    let rate = Scenario::new().key(
        "k",
        Script::default().rate_limit(RateLimit::token_bucket(f64::NAN, 1)),
    );
    assert_eq!(
        rate.validate().unwrap_err().field(),
        "scripts[0].rate_limit.rate"
    );
    let err = MockProvider::builder()
        .default_script(Script::default().chunks(0))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "default.chunks");
}

#[test]
fn credential_headers_are_never_recorded() {
    for name in ["Authorization", "x-api-key", "cookie"] {
        let err = MockProvider::builder()
            .record_header(name)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "record_headers[4]", "{name}");
        assert!(err.message().contains("credentials"), "{err}");
    }
    let err = MockProvider::builder()
        .record_header("bad header")
        .build()
        .unwrap_err();
    assert!(err.message().contains("not a header name"));
    MockProvider::builder()
        .record_header("x-tenant")
        .build()
        .unwrap();
}
