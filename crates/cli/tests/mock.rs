//! `towline mock` run as a process: it starts, prints its URL, answers, and is killed.

mod support;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use support::{command, towline};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// Starts `towline mock args...` and returns it with the base URL it printed.
async fn serve(args: &[&str]) -> (Child, String) {
    let mut all = vec!["mock"];
    all.extend_from_slice(args);
    let mut child = command(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("towline mock starts");
    let stdout = child.stdout.take().expect("piped");
    let line = tokio::time::timeout(Duration::from_secs(30), async {
        BufReader::new(stdout).lines().next_line().await
    })
    .await
    .expect("the URL within 30 s")
    .expect("stdout readable")
    .expect("a first line");
    (child, line)
}

async fn get(url: &str) -> (u16, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client
        .get(url.parse().unwrap())
        .await
        .expect("the mock answers");
    let status = response.status().as_u16();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

async fn post_chat(base: &str, key: &str) -> (u16, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::post(format!("{base}/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::from(
            r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .unwrap();
    let response = client.request(request).await.expect("the mock answers");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).expect("JSON"))
}

#[tokio::test]
async fn serves_models_and_completions_until_killed() {
    let (mut child, url) = serve(&[]).await;
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/v1"),
        "{url}"
    );

    let (status, body) = get(&format!("{url}/models")).await;
    assert_eq!(status, 200);
    let models: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(models["data"][0]["id"], "mock-model");

    let (status, completion) = post_chat(&url, "sk-any").await;
    assert_eq!(status, 200);
    assert_eq!(completion["object"], "chat.completion");

    child.kill().await.expect("killed");
}

/// `--port`, `--dialect` and `--script`: the default script of the file fails every call,
/// written in the dialect the flag names; a key the file names follows its own script.
#[tokio::test]
async fn port_dialect_and_script_flags() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let script = std::env::temp_dir().join(format!("towline-mock-{}.toml", std::process::id()));
    std::fs::write(
        &script,
        r#"
[default]
faults = [{ class = "authentication" }]

[[scripts]]
key = "sk-good"
"#,
    )
    .unwrap();
    let port_arg = port.to_string();
    let (mut child, url) = serve(&[
        "--port",
        &port_arg,
        "--dialect",
        "moonshot",
        "--script",
        script.to_str().unwrap(),
    ])
    .await;
    assert_eq!(url, format!("http://127.0.0.1:{port}/v1"));

    let (status, body) = post_chat(&url, "sk-other").await;
    assert_eq!(status, 401);
    assert_eq!(
        body["error"]["type"], "invalid_authentication_error",
        "{body}"
    );
    let (status, _) = post_chat(&url, "sk-good").await;
    assert_eq!(status, 200);

    child.kill().await.expect("killed");
    std::fs::remove_file(&script).unwrap();
}

#[tokio::test]
async fn bad_flags_are_one_line_errors() {
    let bad = std::env::temp_dir().join(format!("towline-bad-{}.toml", std::process::id()));
    std::fs::write(&bad, "[default]\nfaults = [{ class = \"nonsense\" }]\n").unwrap();
    let cases: &[&[&str]] = &[
        &["--dialect", "klingon"],
        &["--port", "70000"],
        &["--script", "/nonexistent/towline-script.toml"],
        &["--script", bad.to_str().unwrap()],
    ];
    for case in cases {
        let mut all = vec!["mock"];
        all.extend_from_slice(case);
        let run = towline(&all).await;
        run.one_line_error(2);
    }
    std::fs::remove_file(&bad).unwrap();
}
