//! The request handler: reads a request, asks the shared state for a decision, and turns the
//! decision into a response (or a reset, or nothing at all).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;
use towline_core::{ApiKey, ErrorKind, KeyHash, SessionHeader};

use crate::Scenario;
use crate::body::{End, FinishGuard, MockBody};
use crate::render::{render_at, stream_error_event, write_rate_limit_headers};
use crate::script::Action;
use crate::state::{Answer, Plan, Route, Shared};
use crate::success::{Completion, DONE_EVENT, KEEP_ALIVE, model_list};

/// The largest request body the mock reads; a larger one is answered 413.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The error a handler returns to make hyper drop the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("the mock provider reset the connection (scripted fault)")]
pub(crate) struct ConnectionReset;

/// The fields of a chat-completion body the mock reads.
#[derive(Debug, Default, serde::Deserialize)]
struct ChatBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

/// Answers one request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, ConnectionReset> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let route = Route::of(&parts.method, parts.uri.path());
    let key = ApiKey::credential(&parts.headers).map(KeyHash::of);
    let session = parts
        .headers
        .get(SessionHeader::DEFAULT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());

    let mut chat = ChatBody::default();
    let mut malformed = None;
    let mut prompt_bytes = 0;
    if route == Route::Chat {
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                prompt_bytes = bytes.len();
                match serde_json::from_slice::<ChatBody>(&bytes) {
                    Ok(parsed) => chat = parsed,
                    Err(_) => malformed = Some(ErrorKind::InvalidRequest),
                }
            }
            Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                malformed = Some(ErrorKind::PayloadTooLarge);
            }
            // The client went away while sending: nobody to answer.
            Err(_) => return Err(ConnectionReset),
        }
    }

    let stream = chat.stream.unwrap_or(false);
    let plan = shared.arrive(crate::state::Request {
        at,
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        route,
        key,
        session,
        headers: shared.recorded(&parts.headers),
        stream,
        model: chat.model.clone(),
        malformed,
    });
    let model = chat
        .model
        .unwrap_or_else(|| Scenario::DEFAULT_MODEL.to_owned());
    respond(plan, stream, &model, prompt_bytes).await
}

async fn respond(
    plan: Plan,
    stream: bool,
    model: &str,
    prompt_bytes: usize,
) -> Result<Response<MockBody>, ConnectionReset> {
    let Plan {
        dialect,
        script,
        answer,
        latency,
        success_limit,
        request_id,
        guard,
    } = plan;
    let shared = guard.shared().clone();
    let seq = guard.seq();
    let script = &shared.compiled.scripts[script];

    let action = match answer {
        Answer::Models => {
            let body = model_list(&shared.compiled.models);
            let response = json_response(StatusCode::OK, body, guard);
            return Ok(finish_head(
                &shared,
                seq,
                response,
                None,
                dialect,
                request_id.as_deref(),
            ));
        }
        Answer::Act(action) => action,
    };
    if !latency.is_zero() {
        // The guard is held across the wait: if the client gives up, its drop records the end.
        tokio::time::sleep(latency).await;
    }

    let completion = Completion {
        id: format!("chatcmpl-mock-{seq}"),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        model,
        reply: &script.reply,
        prompt_tokens: (prompt_bytes as u64).div_ceil(4).max(1),
    };
    let sse = |frames: Vec<Bytes>, end: End, guard: FinishGuard| {
        let body = MockBody::frames(frames, script.chunk_interval, end, Some(guard));
        event_stream_response(body)
    };
    // The opening role event and the first `n` content events.
    let opening = |n: u32| {
        let mut frames = vec![completion.role_event()];
        frames.extend(
            completion
                .content_events(script.chunks)
                .into_iter()
                .take(n as usize),
        );
        frames
    };

    let mut hint = None;
    let mut response = match action {
        Action::Succeed if stream => {
            let mut frames = opening(script.chunks);
            frames.push(completion.finish_event());
            frames.push(Bytes::from_static(DONE_EVENT));
            sse(frames, End::Done, guard)
        }
        Action::Succeed => json_response(StatusCode::OK, completion.json(), guard),
        Action::Error(mut spec) => {
            spec.set_request_id(request_id.clone());
            let rendered = render_at(dialect, &spec, SystemTime::now());
            hint = rendered.hint;
            let mut response = Response::new(MockBody::full(rendered.body, Some(guard)));
            *response.status_mut() = rendered.status;
            *response.headers_mut() = rendered.headers;
            response
        }
        Action::BreakStream {
            after_chunks,
            mut error,
        } => {
            error.set_request_id(request_id.clone());
            let rendered = render_at(dialect, &error, SystemTime::now());
            let mut frames = opening(after_chunks);
            frames.push(stream_error_event(dialect, &rendered));
            sse(frames, End::Done, guard)
        }
        Action::CutStream { after_chunks } => sse(opening(after_chunks), End::Cut, guard),
        Action::Reset => {
            drop(guard);
            return Err(ConnectionReset);
        }
        Action::StallHeaders => {
            // Never answers; the guard records the end when the connection goes away.
            let _guard = guard;
            std::future::pending::<()>().await;
            unreachable!("a pending future never completes")
        }
        Action::StallBody { after_chunks } if stream => {
            sse(opening(after_chunks), End::Stall, guard)
        }
        Action::StallBody { .. } => {
            let body = MockBody::frames(Vec::new(), Duration::ZERO, End::Stall, Some(guard));
            let mut response = Response::new(body);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Action::Raw {
            status,
            headers,
            body,
        } => {
            let mut response = Response::new(MockBody::full(body, Some(guard)));
            *response.status_mut() = status_code(status);
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    response.headers_mut().append(name, value);
                }
            }
            response
        }
        Action::OversizedBody { status, bytes } => {
            let end = End::Repeat {
                remaining: bytes,
                chunk: Bytes::from(vec![b'x'; 64 * 1024]),
            };
            let body = MockBody::frames(Vec::new(), Duration::ZERO, end, Some(guard));
            let mut response = Response::new(body);
            *response.status_mut() = status_code(status);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Action::EndlessStream { interval } => {
            let end = End::Endless {
                frame: Bytes::from_static(KEEP_ALIVE),
                interval,
            };
            let body = MockBody::frames(Vec::new(), Duration::ZERO, end, Some(guard));
            event_stream_response(body)
        }
    };
    if let Some(limit) = success_limit
        && response.status().is_success()
    {
        write_rate_limit_headers(dialect, &limit, SystemTime::now(), response.headers_mut());
    }
    response = finish_head(&shared, seq, response, hint, dialect, request_id.as_deref());
    Ok(response)
}

/// Adds the request id header and journals the head.
fn finish_head(
    shared: &Shared,
    seq: u64,
    mut response: Response<MockBody>,
    hint: Option<Duration>,
    dialect: crate::Dialect,
    request_id: Option<&str>,
) -> Response<MockBody> {
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        response
            .headers_mut()
            .insert(dialect.request_id_header(), id);
    }
    shared.responded(seq, response.status(), hint);
    response
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn json_response(status: StatusCode, body: Bytes, guard: FinishGuard) -> Response<MockBody> {
    let mut response = Response::new(MockBody::full(body, Some(guard)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn event_stream_response(body: MockBody) -> Response<MockBody> {
    let mut response = Response::new(body);
    let headers: &mut HeaderMap = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
