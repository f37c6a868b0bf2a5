//! The attempt spans of real provider answers, classified by the real Normalize layer.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use opentelemetry::trace::Status;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tower::{Layer, ServiceExt, service_fn};
use towline_core::{Error, ErrorKind, Event};
use towline_normalize::NormalizeLayer;
use towline_trace::names;

use crate::support::*;

fn answer(
    status: u16,
    content_type: &str,
    request_id: &str,
    body: &'static str,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-request-id", request_id)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn span_attributes_of_provider_errors_normalized_by_the_real_layer() {
    let otel = Otel::new();
    let trace = otel.layer();
    let answers = Arc::new(Mutex::new(VecDeque::from([
        answer(
            429,
            "application/json",
            "req-a",
            r#"{"error":{"type":"rate_limit_reached_error","message":"Your account reached max RPM: 3, please try again after 1 seconds"}}"#,
        ),
        answer(
            500,
            "application/json",
            "req-b",
            r#"{"error":{"type":"server_error","message":"internal error"}}"#,
        ),
        answer(
            200,
            "text/event-stream",
            "req-c",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"error\":{\"type\":\"server_error\",\"message\":\"boom\"}}\n\n",
        ),
    ])));
    let provider = service_fn(move |_req: Request<Body>| {
        let resp = answers.lock().unwrap().pop_front().unwrap();
        async move { Ok::<_, Error>(resp) }
    });
    let attempts = trace
        .attempt_layer()
        .layer(NormalizeLayer::new().layer(provider));
    let retry = |attempt, reason| {
        Step::Emit(Event::RetryScheduled {
            attempt,
            delay: secs(10),
            reason,
        })
    };
    let svc = trace.layer(stand_in(
        vec![
            Step::Attempt,
            retry(1, ErrorKind::RateLimited),
            Step::Attempt,
            retry(2, ErrorKind::Server),
            Step::Attempt,
        ],
        attempts,
    ));

    let resp = svc.oneshot(chat_request("sk-normalized")).await.unwrap();
    let mut body = resp.into_body();
    let mut delivered = Vec::new();
    let err = loop {
        match body.frame().await {
            Some(Ok(frame)) => delivered.extend_from_slice(frame.data_ref().unwrap()),
            Some(Err(err)) => break err,
            None => panic!("the stream's in-band error must end it"),
        }
    };
    assert_eq!(err.kind(), ErrorKind::StreamInterrupted);
    assert!(!delivered.is_empty());
    drop(body);

    let spans = otel.finished_spans();
    let tries = spans_named(&spans, "POST");
    assert_eq!(tries.len(), 3);
    let expect = [
        ("429", "rate_limited", Some("rate_limit_reached_error")),
        ("500", "server", Some("server_error")),
        ("200", "stream_interrupted", Some("server_error")),
    ];
    for (span, (status, class, provider_type)) in tries.iter().zip(expect) {
        assert_eq!(
            attr_str(span, names::HTTP_RESPONSE_STATUS_CODE).as_deref(),
            Some(status)
        );
        assert_eq!(attr_str(span, names::ERROR_TYPE).as_deref(), Some(class));
        assert_eq!(
            attr_str(span, names::PROVIDER_ERROR_TYPE).as_deref(),
            provider_type
        );
        assert_eq!(span.status, Status::error(class));
    }
    // Request ids come from the error when Normalize read one, else from the headers.
    assert_eq!(
        attr_str(tries[0], names::PROVIDER_REQUEST_ID).as_deref(),
        Some("req-a")
    );
    assert_eq!(
        attr_str(tries[1], names::PROVIDER_REQUEST_ID).as_deref(),
        Some("req-b")
    );
    assert_eq!(
        attr_str(tries[2], names::PROVIDER_REQUEST_ID).as_deref(),
        Some("req-c")
    );

    let call = spans_named(&spans, "chat kimi-k2")[0];
    assert_eq!(
        attr_str(call, names::ERROR_TYPE).as_deref(),
        Some("stream_interrupted")
    );
    assert_eq!(
        attr_str(call, names::HTTP_RESPONSE_STATUS_CODE).as_deref(),
        Some("200")
    );
    assert_eq!(call.events.len(), 2, "the two retries");
}
