//! A scripted provider and an event recorder for the behaviour tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::Service;
use tower::service_fn;
use towline_core::event::{Event, Observer};
use towline_core::{ApiError, BoxError, Error, ErrorKind, HintSource, ReplayBody, RetryHint};

/// What the provider does with one attempt.
pub(crate) enum Step {
    Ok,
    Fail(Error),
    /// Never answers.
    Hang,
}

pub(crate) fn api(kind: ErrorKind, status: u16) -> Error {
    ApiError::new(kind, StatusCode::from_u16(status).unwrap()).into()
}

pub(crate) fn api_with_hint(kind: ErrorKind, status: u16, hint: Duration) -> Error {
    ApiError::new(kind, StatusCode::from_u16(status).unwrap())
        .with_retry_hint(RetryHint::new(hint, HintSource::RetryAfter))
        .into()
}

pub(crate) fn fail(kind: ErrorKind, status: u16) -> Step {
    Step::Fail(api(kind, status))
}

/// A request extension that must reach every attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Marker(pub(crate) &'static str);

/// One attempt as the provider saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) at: Instant,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) marker: Option<Marker>,
    pub(crate) body: Bytes,
    pub(crate) streaming: bool,
}

/// A provider answering attempts from a script (then `Ok` once the script is used up), and
/// recording every attempt it received.
#[derive(Clone)]
pub(crate) struct Provider {
    steps: Arc<Mutex<VecDeque<Step>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Provider {
    pub(crate) fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Provider {
            steps: Arc::new(Mutex::new(steps.into_iter().collect())),
            seen: Arc::default(),
        }
    }

    /// A provider failing every attempt with `error()`.
    pub(crate) fn always(n: usize, error: impl Fn() -> Error) -> Self {
        Self::new((0..n).map(|_| Step::Fail(error())))
    }

    pub(crate) fn push(&self, step: Step) {
        self.steps.lock().unwrap().push_back(step);
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn attempts(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub(crate) fn service<B>(
        &self,
    ) -> impl Service<Request<ReplayBody<B>>, Response = Response<String>, Error = Error>
    + Clone
    + Send
    + 'static
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let this = self.clone();
        service_fn(move |req: Request<ReplayBody<B>>| {
            let this = this.clone();
            async move {
                let at = Instant::now();
                let (parts, body) = req.into_parts();
                let streaming = body.is_streaming();
                let body = body.collect().await.map_err(Error::transport)?.to_bytes();
                this.seen.lock().unwrap().push(Seen {
                    at,
                    method: parts.method,
                    uri: parts.uri,
                    version: parts.version,
                    headers: parts.headers,
                    marker: parts.extensions.get::<Marker>().cloned(),
                    body,
                    streaming,
                });
                let step = this.steps.lock().unwrap().pop_front().unwrap_or(Step::Ok);
                match step {
                    Step::Ok => Ok(Response::new("ok".to_owned())),
                    Step::Fail(error) => Err(error),
                    Step::Hang => std::future::pending().await,
                }
            }
        })
    }
}

/// An observer recording every event, to put in a request's extensions.
pub(crate) fn recorder() -> (Observer, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (
        Observer::new(move |e: &Event| sink.lock().unwrap().push(*e)),
        events,
    )
}

pub(crate) fn post(body: &'static str) -> Request<String> {
    Request::post("http://provider.test/v1/chat/completions")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .unwrap()
}

pub(crate) fn observed_post(body: &'static str) -> (Request<String>, Arc<Mutex<Vec<Event>>>) {
    let (observer, events) = recorder();
    let mut req = post(body);
    req.extensions_mut().insert(observer);
    (req, events)
}

/// Gaps between consecutive attempts.
pub(crate) fn gaps(seen: &[Seen]) -> Vec<Duration> {
    seen.windows(2).map(|w| w[1].at - w[0].at).collect()
}
