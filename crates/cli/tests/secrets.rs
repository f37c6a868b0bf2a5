//! `towline soak` never prints the API key it was given: not in its JSON report, its table,
//! its progress or its error messages, whatever the provider answers (including answers that
//! echo the key back) and however the command fails.
//!
//! The built `towline` binary is run as a process, as users run it.

use std::process::Output;
use std::time::Duration;

use tokio::process::Command;
use towline::ErrorKind;
use towline::mock::{Dialect, ErrorSpec, Fault, MockProvider, RetryAfter, Script};

/// The part of the key that must never be printed.
const SECRET: &str = "Q7SECRETZ9KX4M2W";
const KEY: &str = "sk-proj-Q7SECRETZ9KX4M2W-abcdef0123456789";

async fn towline(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_towline"))
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("the command finishes")
        .expect("the command runs")
}

/// Fails if the key is anywhere in what the command printed.
#[track_caller]
fn assert_no_key(what: &str, output: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !text.contains(SECRET),
            "{what}: the API key leaked into {stream}:\n{text}"
        );
    }
    (stdout, stderr)
}

/// The JSON report: every request accounted for, and some of them failed.
#[track_caller]
fn check_report(what: &str, stdout: &str, requests: u64) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: not one JSON object ({e}):\n{stdout}"));
    let failed: u64 = report["failed"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(report["requests"], requests, "{what}: {report}");
    assert_eq!(
        report["succeeded"].as_u64().unwrap() + failed,
        requests,
        "{what}: {report}"
    );
    assert!(failed > 0, "{what}: no error path was taken: {report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_report_never_contains_the_api_key_secret() {
    // The embedded mock's mixed script: rate limits with hints, 500s, broken streams, an
    // outage, the session rule.
    let output = towline(&[
        "soak",
        "--api-key",
        KEY,
        "--requests",
        "80",
        "--concurrency",
        "8",
        "--sessions",
        "4",
        "--stream",
        "--breaker-open-ms",
        "200",
        "--report",
        "json",
    ])
    .await;
    let (stdout, stderr) = assert_no_key("embedded mock", &output);
    assert!(output.status.success(), "{stderr}");
    check_report("embedded mock", &stdout, 80);

    // A provider that echoes the key in every error: authentication, rate limits with hints,
    // server errors, broken streams.
    let echo = |kind| {
        ErrorSpec::new(kind).message(format!("Incorrect API key provided: {KEY}. Check it."))
    };
    let server = MockProvider::builder()
        .default_script(
            Script::new(Dialect::OpenAi).faults([
                Fault::error(echo(ErrorKind::Authentication)).first(10),
                Fault::error(echo(ErrorKind::RateLimited).retry_after(RetryAfter::millis(20)))
                    .probability(0.05),
                Fault::error(echo(ErrorKind::Server)).probability(0.1),
                Fault::break_stream(1, echo(ErrorKind::Overloaded)).probability(0.1),
            ]),
        )
        .start()
        .await
        .unwrap();
    let target = server.base_url();
    for report in ["json", "table"] {
        let output = towline(&[
            "soak",
            "--target",
            &target,
            "--api-key",
            KEY,
            "--requests",
            "80",
            "--concurrency",
            "8",
            "--stream",
            "--report",
            report,
        ])
        .await;
        let (stdout, stderr) = assert_no_key("echoing provider", &output);
        assert!(output.status.success(), "{stderr}");
        if report == "json" {
            let report = check_report("echoing provider", &stdout, 80);
            assert!(
                report["failed"]["authentication"].as_u64() > Some(0),
                "{report}"
            );
        }
    }

    // The command's own failures: an unreachable target, bad flags next to the key.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = format!("http://127.0.0.1:{port}/v1");
    for args in [
        vec!["soak", "--target", unreachable.as_str(), "--api-key", KEY],
        vec!["soak", "--target", "not a url", "--api-key", KEY],
        vec!["soak", "--api-key", KEY, "--requests", "0"],
        vec!["soak", "--api-key", KEY, "--retry-budget", "1.5"],
        vec!["soak", "--api-key", KEY, "--rate", "0"],
        vec!["soak", "--api-key", KEY, "--concurrency", "0"],
    ] {
        let output = towline(&args).await;
        let (_, stderr) = assert_no_key(&args.join(" "), &output);
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(!stderr.trim().is_empty(), "{args:?}: says why");
    }
    server.shutdown().await;
}
