//! End to end: a hyper-util client on loopback against the towline mock provider, through
//! Normalize and the breaker, on paused tokio time (the mock's outage window, the load's pace
//! and the breaker's clock all follow it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};
use towline_breaker::{BreakerLayer, Transition};
use towline_core::{ApiKey, CircuitState, ErrorKind};
use towline_mock::{Dialect, Fault, MockProvider, MockServer, Script};
use towline_normalize::NormalizeLayer;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn chat(server: &MockServer, key: &str, stream: bool) -> http::Request<Full<Bytes>> {
    let body = format!(
        r#"{{"model":"kimi-k2","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
    );
    http::Request::post(server.url("/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// A call's result, read to the end of its body: `Ok` or the error's class.
async fn send<S>(svc: S, req: http::Request<Full<Bytes>>) -> Result<(), ErrorKind>
where
    S: tower::Service<
            http::Request<Full<Bytes>>,
            Response = http::Response<
                towline_breaker::ResponseBody<
                    towline_normalize::NormalizeBody<hyper::body::Incoming>,
                >,
            >,
            Error = towline_core::Error,
        >,
{
    let response = svc.oneshot(req).await.map_err(|e| e.kind())?;
    response
        .into_body()
        .collect()
        .await
        .map(drop)
        .map_err(|e| e.kind())
}

/// Transitions heard by the user callback, with the (paused) time they happened.
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<Moment>>>);

/// When a transition happened, from what, to what, and for how long it opened.
type Moment = (Instant, CircuitState, CircuitState, Option<Duration>);

impl Heard {
    fn hook(&self) -> impl Fn(&Transition<'_>) + Send + Sync + 'static {
        let sink = self.0.clone();
        move |t| {
            sink.lock()
                .unwrap()
                .push((Instant::now(), t.from, t.to, t.open_for))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_outage_is_shed_and_recovery_is_found_within_one_open_time() {
    const OUTAGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(4));
    let server = MockProvider::builder()
        .default_script(Script::new(Dialect::OpenAi).fault(Fault::outage(OUTAGE.0, OUTAGE.1)))
        .start()
        .await
        .unwrap();
    let heard = Heard::default();
    let breaker = BreakerLayer::builder()
        .open_duration(Duration::from_millis(500))
        .max_open_duration(Duration::from_secs(2))
        .on_transition(heard.hook())
        .build()
        .unwrap();
    let handle = breaker.handle();
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .layer(NormalizeLayer::new())
        .service(client());

    // 100 calls per second for 6 s, each on its own task.
    let mut pace = tokio::time::interval(Duration::from_millis(10));
    let mut calls = JoinSet::new();
    for _ in 0..600 {
        pace.tick().await;
        let (svc, req) = (svc.clone(), chat(&server, "sk-test", false));
        calls.spawn(async move {
            let sent = Instant::now();
            (sent, send(svc, req).await)
        });
    }
    let mut results = calls.join_all().await;
    results.sort_by_key(|(sent, _)| *sent);

    let start = server.started_at();
    let (from, until) = (start + OUTAGE.0, start + OUTAGE.1);
    let in_outage = |t: Instant| t >= from && t < until;

    // At least 90 % of the calls sent during the outage failed fast, without reaching the
    // provider: the journal saw at most a tenth of them.
    let sent_in_outage = results.iter().filter(|(t, _)| in_outage(*t)).count();
    let journal = server.journal();
    let arrived_in_outage = journal
        .arrivals()
        .iter()
        .filter(|a| in_outage(a.at))
        .count();
    let rejected_in_outage = results
        .iter()
        .filter(|(t, r)| in_outage(*t) && *r == Err(ErrorKind::CircuitOpen))
        .count();
    assert!(
        sent_in_outage >= 290,
        "{sent_in_outage} calls in the window"
    );
    assert!(
        arrived_in_outage * 10 <= sent_in_outage,
        "{arrived_in_outage} of {sent_in_outage} calls reached the provider during the outage"
    );
    assert!(rejected_in_outage * 10 >= sent_in_outage * 9);
    // Every call that did reach it was answered with the outage's 503, classified `Server`.
    assert!(
        results
            .iter()
            .all(|(_, r)| matches!(r, Ok(()) | Err(ErrorKind::Server | ErrorKind::CircuitOpen)))
    );

    // Recovery: the first success after the outage comes no later than the end of the open
    // period in force when the outage ended, plus one probe's round trip.
    let transitions = heard.0.lock().unwrap().clone();
    let open_until = transitions
        .iter()
        .filter(|(at, _, to, _)| *to == CircuitState::Open && *at < until)
        .map(|(at, _, _, open_for)| *at + open_for.unwrap())
        .max()
        .expect("the breaker opened during the outage");
    let first_success = results
        .iter()
        .find(|(t, r)| *t >= until && r.is_ok())
        .map(|(t, _)| *t)
        .expect("calls succeed after the outage");
    let probe_round_trip = Duration::from_millis(20);
    assert!(
        first_success <= open_until.max(until) + probe_round_trip,
        "first success {:?} after the outage, open until {:?} after it",
        first_success - until,
        open_until.saturating_duration_since(until)
    );
    // From then on, everything succeeds, and the breaker is closed with no probe left.
    assert!(
        results
            .iter()
            .filter(|(t, _)| *t > first_success + Duration::from_millis(50))
            .all(|(_, r)| r.is_ok())
    );
    assert_eq!(handle.circuits().len(), 1);
    assert_eq!(handle.circuits()[0].state, CircuitState::Closed);
    assert_eq!(handle.probes_in_flight(), 0);
    assert!(
        transitions
            .iter()
            .any(|(_, from, to, _)| (*from, *to) == (CircuitState::HalfOpen, CircuitState::Closed))
    );
}

#[tokio::test(start_paused = true)]
async fn keys_that_only_get_client_errors_rate_limits_or_quota_never_open() {
    let keys = [
        ("sk-quota", Fault::quota_exhausted()),
        ("sk-revoked", Fault::auth_failure()),
        ("sk-filtered", Fault::content_filtered()),
    ];
    let mut mock = MockProvider::builder();
    for (key, fault) in keys.clone() {
        mock = mock.key(key, Script::new(Dialect::Moonshot).fault(fault));
    }
    let server = mock.start().await.unwrap();
    let breaker = BreakerLayer::builder()
        .key(ApiKey)
        .min_calls(5)
        .consecutive_failures(3)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .layer(NormalizeLayer::new())
        .service(client());

    for (key, _) in keys {
        for _ in 0..50 {
            let result = send(svc.clone(), chat(&server, key, false)).await;
            let kind = result.unwrap_err();
            assert_ne!(kind, ErrorKind::CircuitOpen, "{key}");
            assert!(!kind.is_provider_failure(), "{key}: {kind}");
        }
        assert_eq!(
            server.journal().attempts(key),
            50,
            "every call reached the provider"
        );
    }
    let circuits = handle.circuits();
    assert_eq!(circuits.len(), 3);
    assert!(
        circuits
            .iter()
            .all(|c| c.state == CircuitState::Closed && c.window_failures == 0)
    );
}

#[tokio::test(start_paused = true)]
async fn streams_that_break_mid_way_open_it() {
    let server = MockProvider::builder()
        .default_script(
            Script::new(Dialect::OpenAi).fault(Fault::break_stream(2, ErrorKind::Server)),
        )
        .start()
        .await
        .unwrap();
    let breaker = BreakerLayer::builder()
        .consecutive_failures(3)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .layer(NormalizeLayer::new())
        .service(client());
    for _ in 0..3 {
        let result = send(svc.clone(), chat(&server, "sk-test", true)).await;
        assert_eq!(result, Err(ErrorKind::StreamInterrupted));
    }
    let result = send(svc.clone(), chat(&server, "sk-test", true)).await;
    assert_eq!(result, Err(ErrorKind::CircuitOpen));
    assert_eq!(server.journal().total(), 3);
    assert_eq!(handle.circuits()[0].state, CircuitState::Open);
    assert_eq!(handle.probes_in_flight(), 0);
}
