//! End to end over real HTTP on loopback: Session → Normalize → hyper-util client → the towline
//! mock provider speaking kimi-free-api, with its rule that a second request of a session
//! whose stream is still being pushed gets -2005. Paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use towline_core::{Error, ErrorKind};
use towline_mock::{Cause, Dialect, MockProvider, MockServer, Script};
use towline_normalize::{Normalize, NormalizeLayer};
use towline_session::SessionLayer;

const SESSIONS: usize = 8;
const TURNS: usize = 12;
const CONCURRENCY: usize = 32;

type Client_ = Client<HttpConnector, Full<Bytes>>;

async fn kimi_free_api() -> MockServer {
    MockProvider::builder()
        .default_script(
            Script::new(Dialect::KimiFreeApi)
                .session_busy(true)
                .latency(Duration::from_millis(20))
                .chunks(4)
                .chunk_interval(Duration::from_millis(15)),
        )
        .record_header("x-turn")
        .start()
        .await
        .expect("the mock starts")
}

fn normalized_client() -> Normalize<Client_> {
    let normalize = NormalizeLayer::builder()
        .inspect_ok_json(true)
        .build()
        .unwrap();
    ServiceBuilder::new()
        .layer(normalize)
        .service(Client::builder(TokioExecutor::new()).build_http())
}

/// Turn `turn` of a conversation: a streamed chat completion, numbered in arrival order.
fn turn(base: &str, session: &str, turn: usize) -> Request<Full<Bytes>> {
    Request::post(format!("{base}/chat/completions"))
        .header("authorization", "Bearer free-token")
        .header("content-type", "application/json")
        .header("x-session-id", session)
        .header("x-turn", turn.to_string())
        .body(Full::from(
            r#"{"model":"kimi","messages":[{"role":"user","content":"next"}],"stream":true}"#,
        ))
        .unwrap()
}

/// `SESSIONS × TURNS` streamed turns, request i of session `s{i mod SESSIONS}`, sent by
/// `CONCURRENCY` callers; each stream is read to its end. Returns every turn's outcome.
async fn converse<S, B>(svc: S, base: String) -> Vec<Result<Bytes, Error>>
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<B>, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let next = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (mut svc, next, base) = (svc.clone(), next.clone(), base.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                loop {
                    let ready = svc.ready().await.unwrap();
                    // Numbered where the layer sees it arrive: no await in between.
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= SESSIONS * TURNS {
                        return outcomes;
                    }
                    let session = format!("s{}", i % SESSIONS);
                    let outcome = match ready.call(turn(&base, &session, i)).await {
                        Ok(res) => res
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .map_err(Error::transport),
                        Err(e) => Err(e),
                    };
                    outcomes.push(outcome);
                }
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for caller in callers {
        outcomes.extend(caller.await.unwrap());
    }
    outcomes
}

fn is_session_busy(e: &Error) -> bool {
    e.kind() == ErrorKind::RateLimited && e.api().and_then(|a| a.provider_code()) == Some("-2005")
}

#[tokio::test(start_paused = true)]
async fn with_the_layer_no_turn_meets_a_busy_session() {
    let server = kimi_free_api().await;
    let layer = SessionLayer::new();
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(normalized_client());

    let outcomes = converse(svc, server.base_url()).await;

    assert_eq!(outcomes.len(), SESSIONS * TURNS);
    for outcome in &outcomes {
        let body = outcome.as_ref().expect("every turn succeeds");
        assert!(
            body.ends_with(b"data: [DONE]\n\n"),
            "a whole stream was read"
        );
    }
    let journal = server.journal();
    assert_eq!(journal.total(), SESSIONS * TURNS, "one arrival per turn");
    let busy = journal
        .arrivals()
        .iter()
        .filter(|a| a.cause == Cause::SessionBusy)
        .count();
    assert_eq!(busy, 0, "no -2005 was sent");
    assert_eq!(journal.max_session_concurrency(), 1);
    // Each conversation's turns reached the provider in the order they were sent.
    for s in 0..SESSIONS {
        let order: Vec<usize> = journal
            .for_session(&format!("s{s}"))
            .map(|a| a.headers["x-turn"].to_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(order.len(), TURNS);
        assert!(order.windows(2).all(|w| w[0] < w[1]), "s{s}: {order:?}");
    }
    assert!(monitor.snapshot().is_idle());
    assert_eq!(server.sessions_in_flight(), 0);
}

/// The same traffic without the layer: the provider refuses overlapping turns, so the test
/// above could fail.
#[tokio::test(start_paused = true)]
async fn without_the_layer_turns_meet_busy_sessions() {
    let server = kimi_free_api().await;
    let outcomes = converse(normalized_client(), server.base_url()).await;

    let busy = outcomes
        .iter()
        .filter(|o| o.as_ref().is_err_and(is_session_busy))
        .count();
    // 32 callers over 8 conversations: most turns find their conversation busy.
    assert!(
        busy > SESSIONS * TURNS / 2,
        "only {busy} -2005s without the layer"
    );
    let journal = server.journal();
    let sent_busy = journal
        .arrivals()
        .iter()
        .filter(|a| a.cause == Cause::SessionBusy)
        .count();
    assert_eq!(sent_busy, busy, "every -2005 the mock sent surfaced as one");
}
