//! `towline soak` run as a process against the mock provider: the embedded one (no `--target`),
//! and one started here in the test (`--target`), whose journal says what really reached the
//! provider. Every flag of the contract is exercised, and every JSON report is checked against
//! the journal: attempts equal arrivals, no retry before an announced hint, no overlap within a
//! session, each key within its rate.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use support::towline;
use towline::ErrorKind;
use towline::mock::{
    Cause, Dialect, ErrorSpec, Fault, HintForm, Journal, MockProvider, MockServer, Outcome,
    RetryAfter, Script,
};

/// How late a request may reach the mock after a hint was sent and still be excused: it was
/// already on its way (the CLI's own report uses the same grace).
const HINT_GRACE: Duration = Duration::from_millis(5);

/// The fields of the JSON report the contract names.
const CONTRACT_FIELDS: [&str; 9] = [
    "requests",
    "succeeded",
    "failed",
    "attempts",
    "retries",
    "throttled_wait_ms",
    "breaker_rejections",
    "latency_ms",
    "duration_s",
];

/// The report of one soak run.
#[derive(Debug)]
struct Report(Value);

impl Report {
    fn u64(&self, field: &str) -> u64 {
        self.0[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} is an integer: {:#}", self.0))
    }

    fn f64(&self, field: &str) -> f64 {
        self.0[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} is a number: {:#}", self.0))
    }

    /// Failed logical requests by class.
    fn failed(&self) -> BTreeMap<String, u64> {
        let failed = self.0["failed"].as_object().expect("failed is an object");
        failed
            .iter()
            .map(|(class, n)| (class.clone(), n.as_u64().expect("a count")))
            .collect()
    }

    /// Failed logical requests of `class` (0 when absent).
    fn failed_with(&self, class: ErrorKind) -> u64 {
        self.failed().get(class.as_str()).copied().unwrap_or(0)
    }
}

/// Runs `towline soak ... --report json`, checks the report's shape and its own arithmetic,
/// and returns it.
async fn soak(args: &[&str]) -> Report {
    let mut all = vec!["soak", "--report", "json"];
    all.extend_from_slice(args);
    let run = towline(&all).await;
    let stdout = run.success();
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON object on one line: {run:#?}"
    );
    let report = Report(serde_json::from_str(stdout).expect("the report is JSON"));

    for field in CONTRACT_FIELDS {
        assert!(
            report.0.get(field).is_some(),
            "{field} missing: {:#}",
            report.0
        );
    }
    let failed = report.failed();
    for class in failed.keys() {
        let kind: ErrorKind = class.parse().expect("a class name");
        assert_eq!(kind.as_str(), class, "snake_case class names");
    }
    assert_eq!(
        report.u64("succeeded") + failed.values().sum::<u64>(),
        report.u64("requests"),
        "every request is counted once: {:#}",
        report.0
    );
    let latency = &report.0["latency_ms"];
    let [p50, p90, p99, max] =
        ["p50", "p90", "p99", "max"].map(|p| latency[p].as_f64().expect("a latency"));
    assert!(p50 <= p90 && p90 <= p99 && p99 <= max, "{latency}");
    assert!(report.f64("throttled_wait_ms") >= 0.0 && report.f64("duration_s") > 0.0);
    report
}

/// What every soak against a mock must agree with: the attempts the command sent are the
/// requests the mock received, and no key came back before a hint it had been given.
fn check_against_journal(report: &Report, journal: &Journal) {
    assert_eq!(
        report.u64("attempts"),
        journal.total() as u64,
        "attempts equal the mock's arrivals"
    );
    let early = journal.early_arrivals_any_key(HINT_GRACE);
    assert!(early.is_empty(), "retries before the hint: {early:#?}");
    assert!(
        journal.max_session_concurrency() <= 1,
        "no overlap within a session"
    );
}

async fn start(mock: towline::mock::MockProviderBuilder) -> MockServer {
    mock.start().await.expect("the mock provider starts")
}

/// `--target` and the keys, as arguments.
fn target_args<'a>(server: &'a MockServer, keys: &[&'a str]) -> Vec<String> {
    let mut args = vec!["--target".to_owned(), server.base_url()];
    for key in keys {
        args.extend(["--api-key".to_owned(), (*key).to_owned()]);
    }
    args
}

/// `target_args(..)` followed by `more`, as the `&str`s [`soak`] takes.
fn args<'a>(target: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    target
        .iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

/// The most requests in flight at the mock at once, whatever their key or session.
fn max_in_flight(journal: &Journal) -> usize {
    let arrivals = journal.arrivals();
    arrivals
        .iter()
        .map(|probe| {
            arrivals
                .iter()
                .filter(|a| a.at <= probe.at && a.finished_at.is_none_or(|end| probe.at < end))
                .count()
        })
        .max()
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------------------
// The embedded mock provider (no --target)

/// The default run's mixed script: ordinary keys with random 429s (with hints), 500s and an
/// outage; a key whose quota is gone, a revoked key. The report carries the mock's view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mock_report_agrees_with_its_journal() {
    let report = soak(&["--requests", "36", "--concurrency", "6", "--sessions", "4"]).await;
    assert_eq!(report.u64("requests"), 36);
    let mock = &report.0["mock"];
    assert_eq!(
        mock["arrivals"].as_u64(),
        Some(report.u64("attempts")),
        "attempts equal arrivals: {:#}",
        report.0
    );
    assert_eq!(mock["early_arrivals"], 0, "{:#}", report.0);
    assert!(mock["max_session_overlap"].as_u64().unwrap() <= 1);
    // Six built-in keys, request i on key i mod 6: key 4 has no quota left, key 5 is revoked,
    // six requests each. Each is sent once and fails, unless the script's outage (2 s in) has
    // opened the breaker first: then it fails fast as `circuit_open`, never sent.
    assert_eq!(report.0["keys"], 6);
    let (quota, auth) = (
        report.failed_with(ErrorKind::QuotaExhausted),
        report.failed_with(ErrorKind::Authentication),
    );
    assert!(
        (1..=6).contains(&quota) && (1..=6).contains(&auth),
        "{:#}",
        report.0
    );
    assert_eq!(
        mock["statuses"]["401"].as_u64(),
        Some(auth),
        "revoked: sent once"
    );
    let fast_failed = report.failed_with(ErrorKind::CircuitOpen);
    assert!(quota + auth + fast_failed >= 12, "{:#}", report.0);
    assert!(fast_failed <= report.u64("breaker_rejections"));
}

/// Without `--report json`: a readable table on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mock_table_report() {
    let run = towline(&["soak", "--requests", "6"]).await;
    let table = run.success();
    assert!(serde_json::from_str::<Value>(table).is_err(), "not JSON");
    for line in [
        "towline soak against embedded mock provider",
        "requests",
        "succeeded",
        "attempts sent",
        "latency ms",
        "mock provider",
    ] {
        assert!(table.contains(line), "{line:?} in\n{table}");
    }
}

// ------------------------------------------------------------------------------------------
// --target: a mock started here, with its journal

/// `--api-key` repeated: request i goes out with key i mod 3; the hinted 429s of one key are
/// retried once each, after their hints; attempts equal arrivals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_and_hinted_retries_wait() {
    let hint = RetryAfter::millis(80).form(HintForm::Millis);
    let server = start(
        MockProvider::builder()
            .key("sk-a", Script::new(Dialect::OpenAi))
            .key("sk-b", Script::new(Dialect::Mimo))
            .key(
                "sk-c",
                Script::new(Dialect::Moonshot).fault(Fault::rate_limited(hint).first(2)),
            ),
    )
    .await;
    let target = target_args(&server, &["sk-a", "sk-b", "sk-c"]);
    let report = soak(&args(&target, &["--requests", "30", "--concurrency", "6"])).await;

    let journal = server.journal();
    check_against_journal(&report, &journal);
    assert_eq!(journal.attempts("sk-a"), 10);
    assert_eq!(journal.attempts("sk-b"), 10);
    assert_eq!(
        journal.attempts("sk-c"),
        12,
        "ten requests, two 429s retried"
    );
    assert_eq!(journal.count_status(429), 2);
    assert_eq!(report.u64("succeeded"), 30);
    assert_eq!(report.u64("retries"), 2);
    assert_eq!(report.u64("attempts"), 32);
    assert_eq!(report.0["keys"], 3);
}

/// `--max-retries`: 0 sends every request once; 2 retries a failing request twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_retries_bounds_each_request() {
    // The first three attempts of the key fail with a 500 (three in a row: below the
    // breaker's five).
    let flaky = || {
        MockProvider::builder().key(
            "sk-flaky",
            Script::new(Dialect::Moonshot).fault(Fault::server_error().first(3)),
        )
    };

    let server = start(flaky()).await;
    let target = target_args(&server, &["sk-flaky"]);
    let more = [
        "--requests",
        "10",
        "--concurrency",
        "1",
        "--max-retries",
        "0",
    ];
    let report = soak(&args(&target, &more)).await;
    check_against_journal(&report, &server.journal());
    assert_eq!(report.u64("retries"), 0);
    assert_eq!(report.u64("attempts"), 10, "each request sent once");
    assert_eq!(report.failed_with(ErrorKind::Server), 3);
    assert_eq!(report.u64("succeeded"), 7);

    let server = start(flaky()).await;
    let target = target_args(&server, &["sk-flaky"]);
    let more = [
        "--requests",
        "10",
        "--concurrency",
        "1",
        "--max-retries",
        "2",
    ];
    let report = soak(&args(&target, &more)).await;
    check_against_journal(&report, &server.journal());
    // The first request fails three times (two retries), the fourth attempt succeeds.
    assert_eq!(report.u64("retries"), 2);
    assert_eq!(report.u64("attempts"), 12);
    assert_eq!(report.failed_with(ErrorKind::Server), 1);
    assert_eq!(report.u64("succeeded"), 9);
}

/// A key whose quota is gone: each of its requests reaches the provider once and fails as
/// `quota_exhausted`; waiting would not help, so nothing is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_key_is_sent_once_per_request() {
    let server = start(
        MockProvider::builder()
            .key(
                "sk-quota",
                Script::new(Dialect::Moonshot).fault(Fault::quota_exhausted()),
            )
            .key("sk-ok", Script::new(Dialect::Moonshot)),
    )
    .await;
    let target = target_args(&server, &["sk-quota", "sk-ok"]);
    let report = soak(&args(&target, &["--requests", "20", "--concurrency", "4"])).await;
    let journal = server.journal();
    check_against_journal(&report, &journal);
    assert_eq!(journal.attempts("sk-quota"), 10);
    assert_eq!(report.failed_with(ErrorKind::QuotaExhausted), 10);
    assert_eq!(report.u64("succeeded"), 10);
    assert_eq!(report.u64("retries"), 0);
}

/// `--sessions 3` with `--stream`: request i carries `x-session-id: s{i mod 3}`, and turns of
/// one session never overlap at the provider. The mock speaks kimi-free-api and answers an
/// overlapping turn with -2005 ("a stream is already being pushed"): none was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_serialized() {
    let script = Script::new(Dialect::KimiFreeApi)
        .session_busy(true)
        .chunks(3)
        .chunk_interval(Duration::from_millis(10));
    let server = start(MockProvider::builder().key("sk-s", script)).await;
    let target = target_args(&server, &["sk-s"]);
    let more = [
        "--requests",
        "18",
        "--concurrency",
        "6",
        "--sessions",
        "3",
        "--stream",
    ];
    let report = soak(&args(&target, &more)).await;
    let journal = server.journal();
    check_against_journal(&report, &journal);
    for session in ["s0", "s1", "s2"] {
        assert_eq!(journal.for_session(session).count(), 6, "{session}");
        assert_eq!(journal.max_concurrent(session), 1, "{session}");
    }
    let busy = journal
        .arrivals()
        .iter()
        .filter(|a| a.cause == Cause::SessionBusy);
    assert_eq!(busy.count(), 0, "no turn found its session busy");
    assert!(journal.arrivals().iter().all(|a| a.stream));
    assert_eq!(report.u64("succeeded"), 18);
    assert_eq!(report.u64("attempts"), 18);
}

/// `--rate R --burst B`: in any window of length w, each key reaches the provider at most
/// B + R × w times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_and_burst_bound_each_key() {
    const RATE: f64 = 20.0;
    const BURST: usize = 2;
    let server = start(MockProvider::builder()).await;
    let target = target_args(&server, &["sk-1", "sk-2"]);
    let more = [
        "--requests",
        "40",
        "--concurrency",
        "8",
        "--rate",
        "20",
        "--burst",
        "2",
    ];
    let report = soak(&args(&target, &more)).await;
    let journal = server.journal();
    check_against_journal(&report, &journal);
    assert_eq!(report.u64("succeeded"), 40);
    for key in ["sk-1", "sk-2"] {
        assert_eq!(journal.attempts(key), 20);
        for ms in [50, 100, 250, 500, 1000] {
            let window = Duration::from_millis(ms);
            // Loopback delivers a request within a millisecond or two of its release; a few
            // milliseconds of slack keep a release at a window's edge from counting twice.
            let slack = Duration::from_millis(5);
            let bound = BURST + (RATE * (window + slack).as_secs_f64()) as usize;
            let seen = journal.max_in_window(key, window);
            assert!(seen <= bound, "{key}: {seen} in {window:?}, bound {bound}");
        }
    }
    // 20 requests per key at 20/s with 2 at once: at least 0.9 s, and the wait was reported.
    assert!(report.f64("duration_s") >= 0.85, "{:#}", report.0);
    assert!(report.f64("throttled_wait_ms") > 0.0, "{:#}", report.0);
}

/// `--concurrency C`: never more than C requests in flight at the provider, and C reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_bounds_requests_in_flight() {
    let slow = Script::new(Dialect::OpenAi).latency(Duration::from_millis(40));
    let server = start(MockProvider::builder().default_script(slow)).await;
    let target = target_args(&server, &["sk-c"]);
    let report = soak(&args(&target, &["--requests", "12", "--concurrency", "3"])).await;
    let journal = server.journal();
    check_against_journal(&report, &journal);
    assert_eq!(max_in_flight(&journal), 3);
    assert_eq!(report.u64("succeeded"), 12);
}

/// `--timeout MS`: an attempt that gets no answer fails as `timeout` after MS, and is retried
/// (`--max-retries 1`); the soak never waits for the provider's stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_bounds_each_attempt() {
    let stalled = Script::new(Dialect::OpenAi).fault(Fault::stall_headers());
    let server = start(MockProvider::builder().key("sk-slow", stalled)).await;
    let target = target_args(&server, &["sk-slow"]);
    let more = ["--requests", "2", "--timeout", "100", "--max-retries", "1"];
    let report = soak(&args(&target, &more)).await;
    check_against_journal(&report, &server.journal());
    assert_eq!(report.failed_with(ErrorKind::Timeout), 2);
    assert_eq!(report.u64("attempts"), 4, "each request retried once");
    assert_eq!(report.u64("retries"), 2);
    // Two 100 ms attempts and one backoff (at most 1.5 s by default).
    assert!(report.0["latency_ms"]["max"].as_f64().unwrap() < 4000.0);
}

/// `--breaker-open-ms`: after five failures in a row (the breaker's default) the endpoint is
/// shut; with a minute of open time, nothing more reaches it during the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_stays_open_for_its_open_time() {
    let down = Script::new(Dialect::Moonshot).fault(Fault::server_error());
    let server = start(MockProvider::builder().key("sk-down", down)).await;
    let target = target_args(&server, &["sk-down"]);
    let more = [
        "--requests",
        "30",
        "--concurrency",
        "1",
        "--max-retries",
        "0",
        "--breaker-open-ms",
        "60000",
    ];
    let report = soak(&args(&target, &more)).await;
    check_against_journal(&report, &server.journal());
    assert_eq!(report.u64("attempts"), 5, "{:#}", report.0);
    assert_eq!(report.failed_with(ErrorKind::Server), 5);
    assert_eq!(report.failed_with(ErrorKind::CircuitOpen), 25);
    assert_eq!(report.u64("breaker_rejections"), 25);
    assert!(report.f64("duration_s") < 30.0);
}

/// `--breaker-open-ms 50`: the breaker looks again after 50 ms, finds the provider back, and
/// closes; requests paced by `--rate` span the outage and the recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_probes_after_its_open_time() {
    let blip = Script::new(Dialect::Moonshot).fault(Fault::server_error().first(5));
    let server = start(MockProvider::builder().key("sk-blip", blip)).await;
    let target = target_args(&server, &["sk-blip"]);
    let more = [
        "--requests",
        "30",
        "--concurrency",
        "1",
        "--max-retries",
        "0",
        "--breaker-open-ms",
        "50",
        "--rate",
        "100",
    ];
    let report = soak(&args(&target, &more)).await;
    check_against_journal(&report, &server.journal());
    let rejected = report.failed_with(ErrorKind::CircuitOpen);
    assert_eq!(report.failed_with(ErrorKind::Server), 5, "{:#}", report.0);
    assert!(rejected >= 1, "the breaker opened: {:#}", report.0);
    assert_eq!(report.u64("breaker_rejections"), rejected);
    assert_eq!(report.u64("succeeded"), 25 - rejected, "then closed again");
    assert_eq!(report.u64("attempts"), 30 - rejected);
}

/// `--stream`: every request asks for SSE and is read to its end; a stream that breaks after
/// content is `stream_interrupted` and is not retried (part of it was delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_read_to_the_end() {
    let breaks = Fault::break_stream(2, ErrorSpec::new(ErrorKind::Overloaded)).first(2);
    let script = Script::new(Dialect::Mimo).chunks(4).fault(breaks);
    let server = start(MockProvider::builder().key("sk-st", script)).await;
    let target = target_args(&server, &["sk-st"]);
    let more = ["--requests", "10", "--concurrency", "1", "--stream"];
    let report = soak(&args(&target, &more)).await;
    let journal = server.journal();
    check_against_journal(&report, &journal);
    assert!(journal.arrivals().iter().all(|a| a.stream), "SSE asked for");
    let outcomes: Vec<Outcome> = journal.arrivals().iter().map(|a| a.outcome).collect();
    let broken = outcomes
        .iter()
        .filter(|o| **o == Outcome::StreamBroken(ErrorKind::Overloaded))
        .count();
    assert_eq!(broken, 2);
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Success).count(),
        8
    );
    assert!(journal.arrivals().iter().all(|a| a.finished_at.is_some()));
    assert_eq!(report.failed_with(ErrorKind::StreamInterrupted), 2);
    assert_eq!(report.u64("succeeded"), 8);
    assert_eq!(report.u64("retries"), 0);
}

/// `--retry-budget F`: retries stay within F × requests plus the budget's floor (10 per second
/// over 10 s: 100 at first). An always-409 key (retryable, and not the breaker's business)
/// would take 300 retries without a budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_bounds_retries() {
    let conflict = Script::new(Dialect::KaikoV2).fault(Fault::error(ErrorKind::Conflict));
    let server = start(MockProvider::builder().key("sk-409", conflict)).await;
    let target = target_args(&server, &["sk-409"]);
    let more = [
        "--requests",
        "300",
        "--concurrency",
        "150",
        "--max-retries",
        "1",
        "--retry-budget",
        "0.25",
    ];
    let report = soak(&args(&target, &more)).await;
    check_against_journal(&report, &server.journal());
    let retries = report.u64("retries");
    assert!(retries <= 75 + 100, "{retries} retries: {:#}", report.0);
    assert!(retries >= 100, "the floor alone allows 100: {:#}", report.0);
    assert_eq!(report.u64("attempts"), 300 + retries);
    assert_eq!(report.u64("succeeded"), 0);
}

// ------------------------------------------------------------------------------------------
// Bad input: one line on stderr, a non-zero exit, never a panic

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_are_one_line_errors() {
    let script =
        std::env::temp_dir().join(format!("towline-soak-test-{}.toml", std::process::id()));
    std::fs::write(&script, "seed = 1\n").unwrap();
    let script = script.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["--requests", "abc"],
        &["--requests", "0"],
        &["--concurrency", "0"],
        &["--burst", "3"],
        &["--rate", "0"],
        &["--rate", "NaN"],
        &["--rate", "5", "--burst", "0"],
        &["--retry-budget", "1.5"],
        &["--max-retries", "-1"],
        &["--timeout", "0"],
        &["--breaker-open-ms", "0"],
        &["--report", "yaml"],
        &["--bogus"],
        &["--api-key", "bad\nkey", "--requests", "1"],
        &["--script", "/nonexistent/towline-script.toml"],
        &["--target", "http://127.0.0.1:9/v1", "--script", script],
        // A real provider needs a key.
        &["--target", "http://127.0.0.1:9/v1"],
    ];
    for case in cases {
        let mut all = vec!["soak"];
        all.extend_from_slice(case);
        let run = towline(&all).await;
        let line = run.one_line_error(2);
        assert!(line.len() > "towline: ".len() + 10, "{case:?}: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_urls_are_one_line_errors() {
    for url in [
        "not a url",
        "ftp://example.com/v1",
        "http://",
        "localhost:8080",
        "http://exa mple.com/v1",
        "/v1",
    ] {
        let run = towline(&["soak", "--target", url, "--api-key", "sk-x"]).await;
        let line = run.one_line_error(2);
        assert!(line.contains("--target"), "{url}: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_one_line_error() {
    // A port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/v1");
    let run = towline(&["soak", "--target", &url, "--api-key", "sk-secret-key"]).await;
    let line = run.one_line_error(1);
    assert!(line.contains("cannot reach 127.0.0.1"), "{line}");
    assert!(!run.stderr.contains("sk-secret-key"));
}

/// Odd but valid values run (briefly) rather than panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_values_do_not_panic() {
    let server = start(MockProvider::builder()).await;
    let target = target_args(&server, &["sk-plain"]);
    let max = u64::MAX.to_string();
    let cases: &[&[&str]] = &[
        &["--timeout", &max],
        &["--deadline-ms", &max],
        &["--max-retries", "4294967295"],
        &["--sessions", &max],
        &["--concurrency", "100000"],
        &["--rate", "1e9", "--burst", "4294967295"],
        &["--breaker-open-ms", "86400000"],
        &["--retry-budget", "0"],
        &["--retry-budget", "1"],
    ];
    for case in cases {
        let mut all = args(&target, &["--requests", "2"]);
        all.extend_from_slice(case);
        let report = soak(&all).await;
        assert_eq!(report.u64("requests"), 2, "{case:?}");
        assert_eq!(report.u64("succeeded"), 2, "{case:?}");
    }

    // One request per 1000 s: the second would wait far longer than the throttle's limit on
    // waits, so it fails at once, locally, as `throttled`.
    server.clear_journal();
    let report = soak(&args(&target, &["--requests", "2", "--rate", "0.001"])).await;
    assert_eq!(report.u64("succeeded"), 1);
    assert_eq!(report.failed_with(ErrorKind::Throttled), 1);
    assert!(report.f64("duration_s") < 10.0);
    check_against_journal(&report, &server.journal());
}
