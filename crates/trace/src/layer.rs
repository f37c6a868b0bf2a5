use std::sync::Arc;

use tower_layer::Layer;

use crate::config::TraceBuilder;
use crate::service::{Trace, TraceAttempt};
use crate::telemetry::Shared;

/// The outermost towline layer: one logical client span per call, covering its session wait,
/// throttle waits, every attempt and the whole response body, with every decision of the layers
/// below as a span event; and the call's metrics.
///
/// Pair it with its [`attempt_layer`](TraceLayer::attempt_layer) below the retry layer for one
/// child span per attempt and trace context propagation.
///
/// ```
/// use towline_trace::TraceLayer;
///
/// // Global tracer, meter and propagator; install them before building.
/// let trace = TraceLayer::new();
/// let attempts = trace.attempt_layer();
/// # let _ = attempts;
/// ```
#[derive(Debug, Clone)]
pub struct TraceLayer {
    shared: Arc<Shared>,
}

impl TraceLayer {
    /// A layer with the default settings: global tracer and meter providers and propagator,
    /// provider names guessed from well-known hosts.
    pub fn new() -> Self {
        TraceBuilder::default()
            .build()
            .expect("the default settings are valid")
    }

    /// A builder for a layer with other settings.
    pub fn builder() -> TraceBuilder {
        TraceBuilder::default()
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        TraceLayer { shared }
    }

    /// The layer that traces each attempt of the calls this layer traces, with the same
    /// tracer, instruments and settings. Place it below the retry layer; right above the
    /// per-attempt timeout is best, so that its spans and `http.client.request.duration` measure
    /// the HTTP exchange and not the throttle's waits, and a request the throttle or the breaker
    /// refuses (and so never sends) gets no attempt span.
    pub fn attempt_layer(&self) -> AttemptLayer {
        AttemptLayer {
            shared: self.shared.clone(),
        }
    }
}

impl Default for TraceLayer {
    fn default() -> Self {
        TraceLayer::new()
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace::new(inner, self.shared.clone())
    }
}

/// Traces each attempt as an HTTP client span (`http.request.resend_count` on the second and
/// later ones), child of its call's span, and injects `traceparent`/`tracestate` into the
/// attempt's headers. Made by [`TraceLayer::attempt_layer`]; also works alone, under the
/// caller's current context.
///
/// ```
/// use towline_trace::TraceLayer;
///
/// let attempts = TraceLayer::new().attempt_layer();
/// # let _ = attempts;
/// ```
#[derive(Debug, Clone)]
pub struct AttemptLayer {
    shared: Arc<Shared>,
}

impl<S> Layer<S> for AttemptLayer {
    type Service = TraceAttempt<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceAttempt::new(inner, self.shared.clone())
    }
}
