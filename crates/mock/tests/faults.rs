//! Every scripted fault over a real hyper-util client on loopback.
//!
//! Tests that involve waiting run on paused tokio time: the mock's latencies, windows and
//! buckets follow it, so a 30-second latency takes no real time.

mod support;

use std::time::Duration;

use http_body_util::BodyExt;
use tokio::time::{Instant, sleep, timeout};
use towline_core::ErrorKind;
use towline_mock::{
    Cause, Dialect, ErrorSpec, Fault, HintForm, MockProvider, MockServer, Outcome, RateLimit,
    RetryAfter, Scenario, Script,
};

use support::{Chat, HttpClient, chat, client, send};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn start(script: Script) -> MockServer {
    MockProvider::builder()
        .default_script(script)
        .start()
        .await
        .unwrap()
}

async fn statuses(client: &HttpClient, server: &MockServer, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            chat(client, server, &Chat::key("sk-1"))
                .await
                .status
                .as_u16(),
        );
    }
    out
}

/// Waits (on paused time, instantly) until `done` holds, failing after a bound.
async fn eventually(mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        sleep(ms(1)).await;
    }
    panic!("condition never held");
}

#[tokio::test(start_paused = true)]
async fn latency_delays_the_answer() {
    let server = start(Script::default().latency(Duration::from_secs(30))).await;
    let started = Instant::now();
    let reply = chat(&client(), &server, &Chat::key("sk-1")).await;
    assert_eq!(reply.status, 200);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(30) && elapsed < Duration::from_secs(31),
        "{elapsed:?}"
    );
    let arrival = server.journal().arrivals()[0].clone();
    assert!(arrival.responded_at.unwrap() - arrival.at >= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_faults_latency_overrides_the_scripts() {
    let server = start(
        Script::default()
            .latency(ms(10))
            .fault(Fault::succeed().first(1).latency(Duration::from_secs(5))),
    )
    .await;
    let client = client();
    let t0 = Instant::now();
    chat(&client, &server, &Chat::key("sk-1")).await;
    assert!(t0.elapsed() >= Duration::from_secs(5));
    let t1 = Instant::now();
    chat(&client, &server, &Chat::key("sk-1")).await;
    assert!(t1.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn the_first_n_fail_then_requests_succeed() {
    let server = start(Script::default().fault(Fault::server_error().first(2))).await;
    let client = client();
    assert_eq!(statuses(&client, &server, 3).await, [500, 500, 200]);
    // Another key has its own count.
    assert_eq!(chat(&client, &server, &Chat::key("sk-2")).await.status, 500);
    let journal = server.journal();
    let attempts: Vec<u32> = journal.for_key("sk-1").map(|a| a.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    let causes: Vec<Cause> = journal.for_key("sk-1").map(|a| a.cause).collect();
    assert_eq!(causes, [Cause::Fault(0), Cause::Fault(0), Cause::Script]);
}

#[tokio::test]
async fn quota_runs_out_after_n() {
    let server =
        start(Script::new(Dialect::Moonshot).fault(Fault::quota_exhausted().after(2))).await;
    let client = client();
    assert_eq!(statuses(&client, &server, 4).await, [200, 200, 429, 429]);
    let reply = chat(&client, &server, &Chat::key("sk-1")).await;
    assert_eq!(
        reply.json()["error"]["type"],
        "exceeded_current_quota_error"
    );
    assert_eq!(
        server.journal().count_by_error()[&ErrorKind::QuotaExhausted],
        3
    );
}

#[tokio::test]
async fn auth_and_content_filter_failures() {
    let server = MockProvider::builder()
        .key(
            "sk-bad",
            Script::new(Dialect::Moonshot).fault(Fault::auth_failure()),
        )
        .key(
            "sk-filtered",
            Script::new(Dialect::Moonshot).fault(Fault::content_filtered()),
        )
        .start()
        .await
        .unwrap();
    let client = client();
    let auth = chat(&client, &server, &Chat::key("sk-bad")).await;
    assert_eq!(auth.status, 401);
    assert_eq!(auth.json()["error"]["type"], "invalid_authentication_error");
    let filtered = chat(&client, &server, &Chat::key("sk-filtered")).await;
    assert_eq!(filtered.status, 400);
    assert_eq!(filtered.json()["error"]["type"], "content_filter");
}

#[tokio::test]
async fn rate_limits_announce_their_hint_in_each_form() {
    let limited = |form| {
        Script::new(Dialect::OpenAi).fault(Fault::rate_limited(RetryAfter::millis(1500).form(form)))
    };
    let server = MockProvider::builder()
        .key("sk-s", limited(HintForm::Seconds))
        .key("sk-d", limited(HintForm::HttpDate))
        .key("sk-m", limited(HintForm::Millis))
        .key("sk-b", limited(HintForm::SecondsAndMillis))
        .start()
        .await
        .unwrap();
    let client = client();
    let seconds = chat(&client, &server, &Chat::key("sk-s")).await;
    assert_eq!(seconds.status, 429);
    assert_eq!(seconds.header("retry-after"), Some("2"));

    let date = chat(&client, &server, &Chat::key("sk-d")).await;
    let when = httpdate::parse_http_date(date.header("retry-after").unwrap()).unwrap();
    let ahead = when
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(ahead <= Duration::from_secs(3), "{ahead:?}");

    let millis = chat(&client, &server, &Chat::key("sk-m")).await;
    assert_eq!(millis.header("retry-after-ms"), Some("1500"));
    assert_eq!(millis.header("retry-after"), None);

    let both = chat(&client, &server, &Chat::key("sk-b")).await;
    assert_eq!(both.header("retry-after-ms"), Some("1500"));
    assert_eq!(both.header("retry-after"), Some("2"));

    let journal = server.journal();
    let hint = |key: &str| journal.for_key(key).next().unwrap().hint.unwrap();
    assert_eq!(hint("sk-s"), Duration::from_secs(2));
    assert!(hint("sk-d") >= ms(1500) && hint("sk-d") <= Duration::from_secs(3));
    assert_eq!(hint("sk-m"), ms(1500));
    assert_eq!(hint("sk-b"), ms(1500), "retry-after-ms takes precedence");
}

#[tokio::test(start_paused = true)]
async fn an_outage_covers_its_window_after_the_start() {
    let server = start(Script::default().fault(Fault::outage(
        Duration::from_secs(1),
        Duration::from_secs(3),
    )))
    .await;
    let client = client();
    assert_eq!(chat(&client, &server, &Chat::key("sk-1")).await.status, 200);
    sleep(ms(1500)).await;
    let down = chat(&client, &server, &Chat::key("sk-1")).await;
    assert_eq!(down.status, 503);
    assert_eq!(down.json()["error"]["type"], "server_error");
    sleep_until_since(&server, Duration::from_secs(3)).await;
    assert_eq!(chat(&client, &server, &Chat::key("sk-1")).await.status, 200);
}

async fn sleep_until_since(server: &MockServer, offset: Duration) {
    tokio::time::sleep_until(server.started_at() + offset).await;
}

#[tokio::test]
async fn random_faults_are_reproducible_from_the_seed() {
    let scenario = |seed| {
        Scenario::new()
            .seed(seed)
            .default_script(Script::default().fault(Fault::server_error().probability(0.3)))
    };
    let run = |seed| async move {
        let server = MockProvider::new(scenario(seed))
            .unwrap()
            .start()
            .await
            .unwrap();
        statuses(&client(), &server, 100).await
    };
    let a = run(7).await;
    assert_eq!(a, run(7).await, "same seed, same draws");
    assert_ne!(a, run(8).await, "another seed, other draws");
    let failures = a.iter().filter(|s| **s == 500).count();
    assert!(
        (15..=45).contains(&failures),
        "{failures} of 100 at p = 0.3"
    );

    // The draw depends on the attempt, not on the order of arrival: concurrent requests make
    // the same decisions.
    let server = MockProvider::new(scenario(7))
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = client();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (client, req) = (client.clone(), Chat::key("sk-1").request(&server));
        requests.spawn(async move { send(&client, req).await.unwrap().status });
    }
    while let Some(status) = requests.join_next().await {
        let status = status.unwrap();
        assert!(status == 200 || status == 500, "{status}");
    }
    let journal = server.journal();
    let mut by_attempt: Vec<(u32, u16)> = journal
        .for_key("sk-1")
        .map(|a| (a.attempt, a.status.unwrap().as_u16()))
        .collect();
    by_attempt.sort();
    let sequential: Vec<(u32, u16)> = (1..).zip(a).collect();
    assert_eq!(by_attempt, sequential);
}

#[tokio::test(start_paused = true)]
async fn a_token_bucket_rejects_with_a_computed_hint() {
    let server = MockProvider::builder()
        .key(
            "sk-s",
            Script::default().rate_limit(RateLimit::token_bucket(10.0, 2)),
        )
        .key(
            "sk-m",
            Script::default()
                .rate_limit(RateLimit::token_bucket(10.0, 2).hint_form(HintForm::Millis)),
        )
        .start()
        .await
        .unwrap();
    let client = client();
    for key in ["sk-s", "sk-s"] {
        assert_eq!(chat(&client, &server, &Chat::key(key)).await.status, 200);
    }
    let limited = chat(&client, &server, &Chat::key("sk-s")).await;
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.header("retry-after"),
        Some("1"),
        "100 ms, in whole seconds"
    );
    assert_eq!(limited.header("x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(limited.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(limited.header("x-ratelimit-reset-requests"), Some("200ms"));

    for _ in 0..2 {
        chat(&client, &server, &Chat::key("sk-m")).await;
    }
    let exact = chat(&client, &server, &Chat::key("sk-m")).await;
    assert_eq!(exact.header("retry-after-ms"), Some("100"));
    sleep(ms(100)).await;
    assert_eq!(chat(&client, &server, &Chat::key("sk-m")).await.status, 200);

    let journal = server.journal();
    let limited: Vec<_> = journal
        .arrivals()
        .iter()
        .filter(|a| a.cause == Cause::RateLimit)
        .collect();
    assert_eq!(limited.len(), 2);
    assert_eq!(limited[0].hint, Some(Duration::from_secs(1)));
    assert_eq!(limited[1].hint, Some(ms(100)));
    assert!(journal.early_arrivals_any_key(Duration::ZERO).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_fixed_window_reports_its_state_on_successes() {
    let server = start(
        Script::default()
            .rate_limit(RateLimit::fixed_window(5, Duration::from_secs(1)).success_headers(true)),
    )
    .await;
    let client = client();
    let first = chat(&client, &server, &Chat::key("sk-1")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit-requests"), Some("5"));
    assert_eq!(first.header("x-ratelimit-remaining-requests"), Some("4"));
    assert_eq!(first.header("x-ratelimit-reset-requests"), Some("1s"));
    assert_eq!(
        statuses(&client, &server, 5).await,
        [200, 200, 200, 200, 429]
    );
    sleep(ms(1000)).await;
    let next = chat(&client, &server, &Chat::key("sk-1")).await;
    assert_eq!(next.status, 200);
    assert_eq!(next.header("x-ratelimit-remaining-requests"), Some("4"));
}

#[tokio::test]
async fn stream_faults_leave_non_streaming_requests_alone() {
    let server = start(
        Script::default()
            .fault(Fault::break_stream(1, ErrorKind::Server))
            .fault(Fault::cut_stream(1)),
    )
    .await;
    let reply = chat(&client(), &server, &Chat::key("sk-1")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["object"], "chat.completion");
}

#[tokio::test]
async fn a_cut_stream_fails_the_clients_body_after_some_content() {
    let server = start(Script::default().fault(Fault::cut_stream(2))).await;
    let response = client()
        .request(Chat::key("sk-1").stream().request(&server))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = Vec::new();
    let error = loop {
        match body.frame().await {
            Some(Ok(frame)) => received.extend_from_slice(&frame.into_data().unwrap()),
            Some(Err(e)) => break Some(e),
            None => break None,
        }
    };
    assert!(error.is_some(), "the body must fail");
    let text = String::from_utf8(received).unwrap();
    assert_eq!(
        text.matches("data: ").count(),
        3,
        "role and two chunks: {text}"
    );
    let arrival = server.journal().arrivals()[0].clone();
    assert_eq!(arrival.outcome, Outcome::StreamCut);
    assert!(arrival.finished_at.is_some());
}

#[tokio::test]
async fn a_reset_closes_the_connection_before_any_byte() {
    let server = start(Script::default().fault(Fault::reset().first(1))).await;
    let client = client();
    let err = send(&client, Chat::key("sk-1").request(&server))
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    let arrival = server.journal().arrivals()[0].clone();
    assert_eq!(arrival.outcome, Outcome::Reset);
    assert_eq!(arrival.status, None);
    assert!(arrival.finished_at.is_some());
    // The next request gets through on a new connection.
    assert_eq!(chat(&client, &server, &Chat::key("sk-1")).await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn a_stall_never_answers_until_the_client_gives_up() {
    let server = start(Script::default().fault(Fault::stall_headers())).await;
    let client = client();
    let gave_up = timeout(
        Duration::from_secs(60),
        client.request(Chat::key("sk-1").request(&server)),
    )
    .await;
    assert!(gave_up.is_err(), "no response may come");
    let arrival = server.journal().arrivals()[0].clone();
    assert_eq!(arrival.outcome, Outcome::Stalled);
    assert_eq!(arrival.status, None);
    // The client dropped its request: the connection closes and the exchange is over.
    eventually(|| server.journal().arrivals()[0].finished_at.is_some()).await;
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_sends_its_head_then_nothing() {
    let server = start(Script::default().fault(Fault::stall_body(1))).await;
    let client = client();
    let response = client
        .request(Chat::key("sk-1").stream().request(&server))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    assert!(body.frame().await.is_some(), "the role event");
    assert!(body.frame().await.is_some(), "one content chunk");
    assert!(
        timeout(Duration::from_secs(60), body.frame())
            .await
            .is_err(),
        "then nothing"
    );

    let json = client
        .request(Chat::key("sk-1").request(&server))
        .await
        .unwrap();
    assert_eq!(json.status(), 200);
    assert!(
        timeout(Duration::from_secs(60), json.into_body().frame())
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn a_busy_session_gets_2005_until_its_stream_ends() {
    // The session's first turn stalls mid-stream, so it is still being pushed when the second
    // turn arrives.
    let script = Script::new(Dialect::KimiFreeApi)
        .session_busy(true)
        .fault(Fault::stall_body(1).first(1));
    let server = MockProvider::builder()
        .session("s1", script)
        .session("s2", Script::new(Dialect::KimiFreeApi).session_busy(true))
        .start()
        .await
        .unwrap();
    let client = client();
    let first = client
        .request(Chat::key("sk-1").session("s1").stream().request(&server))
        .await
        .unwrap();
    assert_eq!(first.status(), 200);

    let busy = chat(&client, &server, &Chat::key("sk-1").session("s1").stream()).await;
    assert_eq!(busy.status, 200, "kimi-free-api's real form");
    assert_eq!(
        busy.body,
        r#"{"code":-2005,"message":"已有对话流正在输出","data":null}"#
    );
    // Another session is not affected.
    let other = chat(&client, &server, &Chat::key("sk-1").session("s2").stream()).await;
    assert!(
        other.text().ends_with("data: [DONE]\n\n"),
        "{}",
        other.text()
    );

    // The first turn ends (its body is dropped): the session is free again.
    drop(first);
    eventually(|| server.sessions_in_flight() == 0).await;
    let next = chat(&client, &server, &Chat::key("sk-1").session("s1").stream()).await;
    assert!(next.text().ends_with("data: [DONE]\n\n"), "{}", next.text());

    let journal = server.journal();
    let busy: Vec<_> = journal
        .arrivals()
        .iter()
        .filter(|a| a.cause == Cause::SessionBusy)
        .collect();
    assert_eq!(busy.len(), 1);
    assert_eq!(busy[0].error_kind(), Some(ErrorKind::RateLimited));
    assert_eq!(journal.max_concurrent("s1"), 2);
    assert_eq!(journal.max_concurrent("s2"), 1);
}

#[tokio::test(start_paused = true)]
async fn other_dialects_answer_a_busy_session_with_their_rate_limit_error() {
    let server = start(
        Script::new(Dialect::KimiFreeApiDocumented)
            .session_busy(true)
            .fault(Fault::stall_headers().first(1)),
    )
    .await;
    let client = client();
    let stalled = {
        let req = Chat::key("sk-1").session("s1").request(&server);
        let client = client.clone();
        tokio::spawn(async move { client.request(req).await })
    };
    eventually(|| server.sessions_in_flight() == 1).await;
    let busy = chat(&client, &server, &Chat::key("sk-1").session("s1")).await;
    assert_eq!(busy.status, 429);
    assert_eq!(busy.json()["errcode"], -2005);
    stalled.abort();

    let openai = start(
        Script::new(Dialect::OpenAi)
            .session_busy(true)
            .fault(Fault::stall_headers().first(1)),
    )
    .await;
    let stalled = {
        let req = Chat::key("sk-1").session("s1").request(&openai);
        let client = client.clone();
        tokio::spawn(async move { client.request(req).await })
    };
    eventually(|| openai.sessions_in_flight() == 1).await;
    let busy = chat(&client, &openai, &Chat::key("sk-1").session("s1")).await;
    assert_eq!(busy.status, 429);
    assert_eq!(busy.json()["error"]["code"], "rate_limit_exceeded");
    stalled.abort();
}

#[tokio::test]
async fn should_retry_headers_and_request_ids() {
    let server = MockProvider::builder()
        .key(
            "sk-1",
            Script::default().fault(Fault::error(
                ErrorSpec::new(ErrorKind::Server).should_retry(false),
            )),
        )
        .key("sk-2", Script::default().request_ids(false))
        .start()
        .await
        .unwrap();
    let client = client();
    let reply = chat(&client, &server, &Chat::key("sk-1")).await;
    assert_eq!(reply.header("x-should-retry"), Some("false"));
    let id = reply.header("x-request-id").unwrap().to_owned();
    assert_eq!(
        server.journal().arrivals()[0].request_id.as_deref(),
        Some(id.as_str())
    );
    let quiet = chat(&client, &server, &Chat::key("sk-2")).await;
    assert_eq!(quiet.header("x-request-id"), None);
}

#[tokio::test(start_paused = true)]
async fn raw_oversized_and_endless_answers() {
    let server = MockProvider::builder()
        .key(
            "sk-raw",
            Script::default().fault(Fault::raw(
                502,
                [("content-type", "text/html")],
                "<html>Bad Gateway</html>",
            )),
        )
        .key(
            "sk-big",
            Script::default().fault(Fault::oversized_body(500, 1_000_000)),
        )
        .key(
            "sk-endless",
            Script::default().fault(Fault::endless_stream(Duration::from_secs(1))),
        )
        .start()
        .await
        .unwrap();
    let client = client();
    let raw = chat(&client, &server, &Chat::key("sk-raw")).await;
    assert_eq!(raw.status, 502);
    assert_eq!(raw.header("content-type"), Some("text/html"));
    assert_eq!(raw.text(), "<html>Bad Gateway</html>");

    let big = chat(&client, &server, &Chat::key("sk-big")).await;
    assert_eq!(big.status, 500);
    assert_eq!(big.header("content-length"), Some("1000000"));
    assert_eq!(big.body.len(), 1_000_000);

    let endless = client
        .request(Chat::key("sk-endless").stream().request(&server))
        .await
        .unwrap();
    assert_eq!(endless.headers()["content-type"], "text/event-stream");
    let mut body = endless.into_body();
    let started = Instant::now();
    for _ in 0..3 {
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(frame, ": keep-alive\n\n");
    }
    assert!(started.elapsed() >= Duration::from_secs(2));
}
