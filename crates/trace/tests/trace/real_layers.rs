//! The span tree of a call that went through the real session, retry and throttle layers of
//! the default order (trace → session → retry → throttle → attempt → normalize → client), over
//! real HTTP against the towline mock provider: queued behind its conversation's earlier turn,
//! throttled by its key's rate, retried twice after two 500s, then successful.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use towline_core::ReplayBody;
use towline_mock::{Dialect, Fault, MockProvider, Script};
use towline_normalize::NormalizeLayer;
use towline_retry::{Jitter, RetryLayer};
use towline_session::SessionLayer;
use towline_throttle::ThrottleLayer;
use towline_trace::names;

use crate::support::*;

const KEY: &str = "sk-real-layers-span-7788";
const OTHER_KEY: &str = "sk-real-layers-other-1";

fn chat(server: &towline_mock::MockServer, key: &str) -> Request<Full<Bytes>> {
    Request::post(server.url("/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header("x-session-id", "conversation-1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"kimi-k2","messages":[{"role":"user","content":"hi"}]}"#,
        )))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn span_tree_with_the_real_session_throttle_and_retry_layers() {
    let server = MockProvider::builder()
        .models(["kimi-k2"])
        .key(
            KEY,
            Script::new(Dialect::Moonshot).fault(Fault::server_error().first(2)),
        )
        .start()
        .await
        .unwrap();
    let otel = Otel::new();
    let trace = otel.layer();
    let sessions = SessionLayer::new();
    let monitor = sessions.monitor();
    let throttle = ThrottleLayer::builder()
        .rate(2.0)
        .burst(1)
        .no_adaptive()
        .build()
        .unwrap();
    let retry = RetryLayer::builder()
        .max_retries(3)
        .jitter(Jitter::None)
        .backoff_base(Duration::from_millis(10))
        .no_budget()
        .build()
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
    let mut svc = ServiceBuilder::new()
        .layer(trace.clone())
        .layer(sessions)
        .layer(retry)
        .layer(throttle.clone())
        .layer(trace.attempt_layer())
        .layer(NormalizeLayer::new())
        .service(client);

    // The conversation's first turn holds the session while its body is unread.
    let first = svc
        .ready()
        .await
        .unwrap()
        .call(chat(&server, OTHER_KEY))
        .await
        .unwrap();
    let second = tokio::spawn(svc.clone().oneshot(chat(&server, KEY)));
    while monitor.waiting() == 0 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.into_body().collect().await.unwrap();

    let response = second.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    assert!(monitor.snapshot().is_idle());
    assert_eq!(throttle.stats().waiters, 0);

    // One call span for the second turn, three attempt spans under it.
    let spans = otel.finished_spans();
    let calls = spans_named(&spans, "chat kimi-k2");
    assert_eq!(calls.len(), 2, "{spans:#?}");
    let call = calls
        .iter()
        .find(|c| {
            c.events
                .iter()
                .any(|e| e.name == names::EVENT_RETRY_SCHEDULED)
        })
        .expect("the retried call");
    let attempts: Vec<_> = spans_named(&spans, "POST")
        .into_iter()
        .filter(|a| a.parent_span_id == call.span_context.span_id())
        .collect();
    assert_eq!(attempts.len(), 3, "{spans:#?}");
    for (i, attempt) in attempts.iter().enumerate() {
        let resend = attr_str(attempt, names::HTTP_REQUEST_RESEND_COUNT);
        assert_eq!(resend, (i > 0).then(|| i.to_string()));
    }

    // The decisions, in order, as events of the call span: queued behind the first turn, then
    // two retries of a 500, each retry waiting for the key's next token (2/s).
    let events: Vec<&str> = call.events.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(events[0], names::EVENT_SESSION_WAITED, "{events:?}");
    let retries = events
        .iter()
        .filter(|e| **e == names::EVENT_RETRY_SCHEDULED)
        .count();
    let waits = events
        .iter()
        .filter(|e| **e == names::EVENT_THROTTLE_WAITED)
        .count();
    assert_eq!(retries, 2, "{events:?}");
    assert_eq!(waits, 2, "{events:?}");
    let reasons: Vec<_> = call
        .events
        .iter()
        .filter(|e| e.name == names::EVENT_RETRY_SCHEDULED)
        .map(|e| event_attr(&e.attributes, names::ERROR_TYPE).map(|v| v.to_string()))
        .collect();
    assert_eq!(
        reasons,
        [Some("server".to_owned()), Some("server".to_owned())]
    );
    assert_eq!(
        attr_str(call, names::HTTP_RESPONSE_STATUS_CODE).as_deref(),
        Some("200")
    );

    // The provider saw exactly three attempts of the key, none sooner than its rate allows.
    let journal = server.journal();
    assert_eq!(journal.attempts(KEY), 3);
    assert_eq!(journal.max_in_window(KEY, Duration::from_millis(499)), 1);
}
