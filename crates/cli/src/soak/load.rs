//! The load generator: `concurrency` workers send `requests` logical requests through a service
//! and account for every one of them exactly once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use indicatif::ProgressBar;
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use towline::event::{Event, Observer};
use towline::{Error, ErrorKind};

use super::report::{Latency, Report};

/// What to send.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// `POST` target: `{base}/chat/completions`.
    pub(crate) url: Uri,
    /// Request `i` uses key `i mod keys.len()`; never printed.
    pub(crate) keys: Vec<HeaderValue>,
    /// When > 0, request `i` carries `x-session-id: s{i mod sessions}`.
    pub(crate) sessions: u64,
    pub(crate) requests: u64,
    pub(crate) concurrency: usize,
    pub(crate) stream: bool,
    pub(crate) model: String,
}

impl Plan {
    /// The `Authorization` value for `key`, marked sensitive so no HTTP layer logs it.
    pub(crate) fn bearer(key: &str) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
        let mut value = HeaderValue::try_from(format!("Bearer {key}"))?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn request(&self, i: u64, observer: &Observer) -> Request<Full<Bytes>> {
        let body = serde_json::json!({
            "model": self.model,
            "messages": [{"role": "user", "content": format!("soak request {i}")}],
            "stream": self.stream,
        });
        let mut request = Request::post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("method, URI and headers are valid");
        if !self.keys.is_empty() {
            let key = &self.keys[(i % self.keys.len() as u64) as usize];
            request.headers_mut().insert(AUTHORIZATION, key.clone());
        }
        if self.sessions > 0 {
            let session = HeaderValue::try_from(format!("s{}", i % self.sessions))
                .expect("a session name is a valid header value");
            request.headers_mut().insert("x-session-id", session);
        }
        request.extensions_mut().insert(observer.clone());
        request
    }
}

/// Counters fed by the layers' decision events.
#[derive(Debug, Default)]
struct Decisions {
    retries: AtomicU64,
    throttle_wait_nanos: AtomicU64,
    breaker_rejections: AtomicU64,
}

impl Decisions {
    fn observe(&self, event: &Event) {
        match event {
            Event::RetryScheduled { .. } => {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            Event::ThrottleWaited { waited } => {
                let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
                self.throttle_wait_nanos.fetch_add(nanos, Ordering::Relaxed);
            }
            Event::BreakerRejected { .. } => {
                self.breaker_rejections.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// The outcome of one logical request.
#[derive(Debug, Default)]
struct Outcomes {
    succeeded: u64,
    failed: BTreeMap<ErrorKind, u64>,
    latencies: Vec<Duration>,
}

/// Sends the plan's requests through `service` and reports. `attempts` counts the HTTP attempts
/// that reached the client (the caller wires it below the stack).
pub(crate) async fn run<S, B>(
    service: S,
    plan: Arc<Plan>,
    attempts: Arc<AtomicU64>,
    progress: ProgressBar,
) -> Report
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Error>,
{
    let decisions = Arc::new(Decisions::default());
    let observer = {
        let decisions = decisions.clone();
        Observer::new(move |event| decisions.observe(event))
    };
    let next = Arc::new(AtomicU64::new(0));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let started = Instant::now();

    let workers: Vec<_> = (0..plan.concurrency.max(1))
        .map(|_| {
            let (service, plan, next) = (service.clone(), plan.clone(), next.clone());
            let (observer, outcomes, progress) =
                (observer.clone(), outcomes.clone(), progress.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= plan.requests {
                        break;
                    }
                    let begun = Instant::now();
                    let result = send_one(service.clone(), plan.request(i, &observer)).await;
                    let latency = begun.elapsed();
                    let mut outcomes = outcomes.lock().expect("outcome lock");
                    match result {
                        Ok(()) => outcomes.succeeded += 1,
                        Err(kind) => *outcomes.failed.entry(kind).or_default() += 1,
                    }
                    outcomes.latencies.push(latency);
                    drop(outcomes);
                    progress.inc(1);
                }
            })
        })
        .collect();
    for worker in workers {
        if let Err(panic) = worker.await {
            std::panic::resume_unwind(panic.into_panic());
        }
    }
    progress.finish_and_clear();

    let outcomes = std::mem::take(&mut *outcomes.lock().expect("outcome lock"));
    let mut report = Report {
        target: plan.url.to_string(),
        keys: plan.keys.len(),
        requests: plan.requests,
        succeeded: outcomes.succeeded,
        failed: BTreeMap::new(),
        attempts: attempts.load(Ordering::Relaxed),
        retries: decisions.retries.load(Ordering::Relaxed),
        throttled_wait_ms: decisions.throttle_wait_nanos.load(Ordering::Relaxed) as f64 / 1e6,
        breaker_rejections: decisions.breaker_rejections.load(Ordering::Relaxed),
        latency_ms: Latency::of(outcomes.latencies),
        duration_s: started.elapsed().as_secs_f64(),
        mock: None,
    };
    for (kind, count) in outcomes.failed {
        *report.failed.entry(kind.as_str()).or_default() += count;
    }
    report
}

/// One logical request, read to the end of its body (a stream's last event).
async fn send_one<S, B>(service: S, request: Request<Full<Bytes>>) -> Result<(), ErrorKind>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Error>,
    B: Body,
    B::Error: Into<Error>,
{
    let response = service.oneshot(request).await.map_err(|e| e.kind())?;
    let mut body = std::pin::pin!(response.into_body());
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| e.into().kind())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;

    fn plan(requests: u64, keys: &[&str], sessions: u64) -> Arc<Plan> {
        Arc::new(Plan {
            url: Uri::from_static("http://127.0.0.1:9/v1/chat/completions"),
            keys: keys.iter().map(|k| Plan::bearer(k).unwrap()).collect(),
            sessions,
            requests,
            concurrency: 4,
            stream: false,
            model: "m".into(),
        })
    }

    #[tokio::test]
    async fn every_request_is_accounted_for_once() {
        let attempts = Arc::new(AtomicU64::new(0));
        let seen_keys = Arc::new(Mutex::new(Vec::new()));
        let service = {
            let (attempts, seen_keys) = (attempts.clone(), seen_keys.clone());
            tower::service_fn(move |req: Request<Full<Bytes>>| {
                attempts.fetch_add(1, Ordering::Relaxed);
                let auth = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
                let session = req.headers()["x-session-id"].to_str().unwrap().to_owned();
                seen_keys.lock().unwrap().push((auth.clone(), session));
                if let Some(observer) = req.extensions().get::<Observer>() {
                    observer.emit(&Event::RetryScheduled {
                        attempt: 1,
                        delay: Duration::ZERO,
                        reason: ErrorKind::Server,
                    });
                }
                async move {
                    if auth.ends_with("bad") {
                        Err(Error::circuit_open(Duration::from_secs(1)))
                    } else {
                        Ok(Response::new(Empty::<Bytes>::new()))
                    }
                }
            })
        };
        let report = run(
            service,
            plan(10, &["sk-good", "sk-bad"], 3),
            attempts,
            ProgressBar::hidden(),
        )
        .await;
        assert_eq!(report.requests, 10);
        assert_eq!(report.succeeded, 5);
        assert_eq!(report.failed["circuit_open"], 5);
        assert_eq!(report.attempts, 10);
        assert_eq!(report.retries, 10);
        let seen = seen_keys.lock().unwrap();
        assert!(seen.iter().any(|(k, s)| k == "Bearer sk-good" && s == "s0"));
        assert!(
            seen.iter()
                .all(|(_, s)| ["s0", "s1", "s2"].contains(&s.as_str()))
        );
        assert!(!serde_json::to_string(&report).unwrap().contains("sk-good"));
    }

    #[test]
    fn bearer_values_are_sensitive() {
        assert!(Plan::bearer("sk-x").unwrap().is_sensitive());
        assert!(Plan::bearer("bad\nkey").is_err());
    }
}
