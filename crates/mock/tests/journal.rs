//! The journal's queries, on hand-built journals, and what the live server records.

mod support;

use std::time::Duration;

use http::StatusCode;
use tokio::time::{Instant, sleep};
use towline_core::{ErrorKind, KeyHash};
use towline_mock::{Arrival, Dialect, Fault, Journal, MockProvider, Outcome, Script};

use support::{Chat, chat, client};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn seqs<'a>(arrivals: impl IntoIterator<Item = &'a Arrival>) -> Vec<u64> {
    arrivals.into_iter().map(|a| a.seq).collect()
}

// ---- Hand-built journals ---------------------------------------------------------------------

#[test]
fn early_arrivals_are_those_inside_an_announced_hint() {
    let t0 = Instant::now();
    let at = |n| t0 + ms(n);
    let journal: Journal = vec![
        // Key a: a 429 at 0 (answered at 10) asking for 100 ms.
        Arrival::new(0, at(0))
            .with_key("a")
            .with_status(429)
            .with_responded_at(at(10))
            .with_hint(ms(100)),
        Arrival::new(1, at(5)).with_key("a"), // before the hint was sent: fine
        Arrival::new(2, at(12)).with_key("a"), // in flight when it was sent (grace 5 ms): fine
        Arrival::new(3, at(50)).with_key("a"), // early
        Arrival::new(4, at(109)).with_key("a"), // early
        Arrival::new(5, at(110)).with_key("a"), // exactly when allowed: fine
        // Key b: no hint of its own; key a's hint does not apply to it.
        Arrival::new(6, at(50)).with_key("b"),
        // Key b: a hint of 1 s at 200, then an arrival 300 ms later: early.
        Arrival::new(7, at(200))
            .with_key("b")
            .with_status(429)
            .with_hint(ms(1000)),
        Arrival::new(8, at(500)).with_key("b"),
    ]
    .into();
    assert_eq!(seqs(journal.early_arrivals("a", ms(5))), [3, 4]);
    assert_eq!(seqs(journal.early_arrivals("a", Duration::ZERO)), [2, 3, 4]);
    assert_eq!(seqs(journal.early_arrivals("b", ms(5))), [8]);
    assert_eq!(seqs(journal.early_arrivals_any_key(ms(5))), [3, 4, 8]);
    assert!(journal.early_arrivals("c", Duration::ZERO).is_empty());
    // A grace as long as the hint excuses everything.
    assert!(journal.early_arrivals("a", ms(100)).is_empty());
}

#[test]
fn arrivals_per_key_in_any_window() {
    let t0 = Instant::now();
    let journal: Journal = [0, 100, 150, 180, 400, 1000]
        .into_iter()
        .enumerate()
        .map(|(i, t)| Arrival::new(i as u64, t0 + ms(t)).with_key("a"))
        .chain([Arrival::new(9, t0 + ms(150)).with_key("b")])
        .collect();
    assert_eq!(journal.max_in_window("a", ms(100)), 3, "100, 150, 180");
    assert_eq!(
        journal.max_in_window("a", ms(80)),
        2,
        "[100, 180) leaves 180 out"
    );
    assert_eq!(journal.max_in_window("a", ms(50)), 2);
    assert_eq!(journal.max_in_window("a", ms(1)), 1);
    assert_eq!(journal.max_in_window("a", ms(1001)), 6);
    let per_key = journal.max_in_window_per_key(ms(100));
    assert_eq!(per_key[&KeyHash::of(b"a")], 3);
    assert_eq!(per_key[&KeyHash::of(b"b")], 1);
    assert_eq!(journal.attempts("a"), 6);
}

#[test]
fn concurrency_per_session() {
    let t0 = Instant::now();
    let at = |n| t0 + ms(n);
    let journal: Journal = vec![
        // s1: three turns back to back, never overlapping.
        Arrival::new(0, at(0))
            .with_session("s1")
            .with_finished_at(at(10)),
        Arrival::new(1, at(10))
            .with_session("s1")
            .with_finished_at(at(20)),
        Arrival::new(2, at(25))
            .with_session("s1")
            .with_finished_at(at(30)),
        // s2: two turns overlap, then a third arrives while an unfinished one is still open.
        Arrival::new(3, at(0))
            .with_session("s2")
            .with_finished_at(at(50)),
        Arrival::new(4, at(40))
            .with_session("s2")
            .with_finished_at(at(45)),
        Arrival::new(5, at(60)).with_session("s2"),
        Arrival::new(6, at(70))
            .with_session("s2")
            .with_finished_at(at(80)),
        // No session.
        Arrival::new(7, at(0)),
    ]
    .into();
    assert_eq!(journal.max_concurrent("s1"), 1);
    assert_eq!(journal.max_concurrent("s2"), 2);
    assert_eq!(journal.max_concurrent("s3"), 0);
    let per_session = journal.max_concurrent_per_session();
    assert_eq!(per_session.len(), 2);
    assert_eq!(journal.max_session_concurrency(), 2);
    assert_eq!(journal.for_session("s2").count(), 4);
}

#[test]
fn counts_by_status_and_error() {
    let t0 = Instant::now();
    let journal: Journal = vec![
        Arrival::new(0, t0).with_status(200),
        Arrival::new(1, t0)
            .with_status(429)
            .with_outcome(Outcome::Error(ErrorKind::RateLimited)),
        Arrival::new(2, t0)
            .with_status(429)
            .with_outcome(Outcome::Error(ErrorKind::QuotaExhausted)),
        Arrival::new(3, t0)
            .with_status(200)
            .with_outcome(Outcome::StreamBroken(ErrorKind::Overloaded)),
        Arrival::new(4, t0).with_outcome(Outcome::Reset),
    ]
    .into();
    assert_eq!(journal.total(), 5);
    assert_eq!(journal.count_status(429), 2);
    let by_status = journal.count_by_status();
    assert_eq!(
        by_status.into_iter().collect::<Vec<_>>(),
        [(200, 2), (429, 2)]
    );
    let by_error = journal.count_by_error();
    assert_eq!(by_error[&ErrorKind::RateLimited], 1);
    assert_eq!(by_error[&ErrorKind::QuotaExhausted], 1);
    assert_eq!(by_error[&ErrorKind::Overloaded], 1);
    assert_eq!(by_error.len(), 3);
}

// ---- What the server records -----------------------------------------------------------------

#[tokio::test]
async fn selected_headers_are_recorded_and_credentials_never() {
    let server = MockProvider::builder()
        .record_header("x-tenant")
        .start()
        .await
        .unwrap();
    let reply = chat(
        &client(),
        &server,
        &Chat::key("sk-very-secret")
            .session("conv-1")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .header("idempotency-key", "idem-1")
            .header("x-tenant", "acme")
            .header("x-api-key", "sk-other-secret"),
    )
    .await;
    assert_eq!(reply.status, 200);
    let journal = server.journal();
    let arrival = &journal.arrivals()[0];
    assert_eq!(arrival.key, Some(KeyHash::of(b"sk-very-secret")));
    assert_eq!(arrival.session.as_deref(), Some("conv-1"));
    assert_eq!(arrival.attempt, 1);
    assert_eq!(arrival.model.as_deref(), Some("kimi-k2"));
    assert_eq!(arrival.status, Some(StatusCode::OK));
    let headers = &arrival.headers;
    assert_eq!(
        headers["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(headers["idempotency-key"], "idem-1");
    assert_eq!(headers["x-session-id"], "conv-1");
    assert_eq!(headers["x-tenant"], "acme");
    assert!(headers.get("authorization").is_none());
    assert!(headers.get("x-api-key").is_none());
    let debug = format!("{journal:?}");
    assert!(!debug.contains("secret"), "{debug}");
}

#[tokio::test]
async fn times_attempts_and_ends_are_recorded() {
    let server = MockProvider::builder()
        .default_script(
            Script::new(Dialect::OpenAi)
                .chunks(3)
                .chunk_interval(ms(20))
                .fault(Fault::server_error().first(1)),
        )
        .start()
        .await
        .unwrap();
    let client = client();
    assert_eq!(chat(&client, &server, &Chat::key("sk-1")).await.status, 500);
    let stream = chat(&client, &server, &Chat::key("sk-1").stream()).await;
    assert!(stream.text().ends_with("data: [DONE]\n\n"));
    chat(&client, &server, &Chat::key("sk-2")).await;

    let journal = server.journal();
    let a = journal.arrivals();
    assert_eq!(a.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1, 2, 1]);
    assert_eq!(a[0].outcome, Outcome::Error(ErrorKind::Server));
    for arrival in a {
        let responded = arrival.responded_at.unwrap();
        let finished = arrival.finished_at.unwrap();
        assert!(
            arrival.at <= responded && responded <= finished,
            "{arrival:?}"
        );
    }
    // Six events, twenty milliseconds apart: the stream ends at least 100 ms after its head.
    assert!(a[1].finished_at.unwrap() - a[1].responded_at.unwrap() >= ms(100));
    assert!(a[0].at < a[1].at && a[1].at < a[2].at);
    assert_eq!(server.arrivals(), 3);
}

#[tokio::test]
async fn live_concurrency_per_session() {
    let server = MockProvider::builder()
        .default_script(Script::default().latency(ms(50)))
        .start()
        .await
        .unwrap();
    let client = client();
    // s1: one turn after the other.
    chat(&client, &server, &Chat::key("k").session("s1")).await;
    chat(&client, &server, &Chat::key("k").session("s1")).await;
    // s2: two turns at once.
    let (c1, c2) = (client.clone(), client.clone());
    let (r1, r2) = (
        Chat::key("k").session("s2").request(&server),
        Chat::key("k").session("s2").request(&server),
    );
    let (a, b) = tokio::join!(support::send(&c1, r1), support::send(&c2, r2));
    assert!(a.is_ok() && b.is_ok());
    let journal = server.journal();
    assert_eq!(journal.max_concurrent("s1"), 1);
    assert_eq!(journal.max_concurrent("s2"), 2);
    assert_eq!(server.sessions_in_flight(), 0);
}

#[tokio::test]
async fn the_journal_can_be_bounded_and_cleared() {
    let server = MockProvider::builder()
        .journal_limit(2)
        .start()
        .await
        .unwrap();
    let client = client();
    for _ in 0..5 {
        chat(&client, &server, &Chat::key("sk-1")).await;
    }
    let journal = server.journal();
    assert_eq!(seqs(journal.arrivals()), [3, 4]);
    assert_eq!(journal.arrivals()[1].attempt, 5, "counting goes on");
    assert_eq!(server.arrivals(), 5);
    server.clear_journal();
    assert!(server.journal().is_empty());
    chat(&client, &server, &Chat::key("sk-1")).await;
    assert_eq!(seqs(server.journal().arrivals()), [5]);

    let silent = MockProvider::builder()
        .journal_limit(0)
        .start()
        .await
        .unwrap();
    chat(&client, &silent, &Chat::key("sk-1")).await;
    assert!(silent.journal().is_empty());
    assert_eq!(silent.arrivals(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_honours_the_hint_is_never_early() {
    let server = MockProvider::builder()
        .default_script(
            Script::default()
                .fault(Fault::rate_limited(towline_mock::RetryAfter::secs(2)).first(3)),
        )
        .start()
        .await
        .unwrap();
    let client = client();
    let mut statuses = Vec::new();
    loop {
        let reply = chat(&client, &server, &Chat::key("sk-1")).await;
        statuses.push(reply.status.as_u16());
        match reply.header("retry-after") {
            Some(secs) => sleep(Duration::from_secs(secs.parse().unwrap())).await,
            None => break,
        }
    }
    assert_eq!(statuses, [429, 429, 429, 200]);
    let journal = server.journal();
    assert!(journal.early_arrivals("sk-1", Duration::ZERO).is_empty());
    // A client that ignores it is caught.
    let impatient = MockProvider::builder()
        .default_script(
            Script::default()
                .fault(Fault::rate_limited(towline_mock::RetryAfter::secs(2)).first(1)),
        )
        .start()
        .await
        .unwrap();
    chat(&client, &impatient, &Chat::key("sk-1")).await;
    sleep(ms(1999)).await;
    chat(&client, &impatient, &Chat::key("sk-1")).await;
    assert_eq!(
        impatient
            .journal()
            .early_arrivals("sk-1", Duration::ZERO)
            .len(),
        1
    );
}
