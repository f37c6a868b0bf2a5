//! [`ServiceBuilderExt`]: one method per towline layer on tower's `ServiceBuilder`, for users
//! who order the layers themselves.

use tower::ServiceBuilder;
use tower::layer::util::Stack as LayerStack;

mod sealed {
    pub trait Sealed<L> {}
    impl<L> Sealed<L> for tower::ServiceBuilder<L> {}
}

/// Adds towline's layers to a `tower::ServiceBuilder`, one method each (tower-http's
/// `ServiceBuilderExt` pattern). The names carry an `llm_` prefix because `ServiceBuilder`
/// already has inherent `retry`, `timeout` and `rate_limit` methods that would shadow them.
///
/// The order used by [`Stack`](crate::Stack), outermost first, is the one to keep unless you
/// know why: trace, session, retry, throttle, breaker, attempt trace, timeout, normalize.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use towline::ServiceBuilderExt;
/// use towline::normalize::NormalizeLayer;
/// use towline::retry::{RetryLayer, TimeoutLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = service_fn(|_req: http::Request<towline::ReplayBody<Full<Bytes>>>| async {
///     Ok::<_, towline::Error>(http::Response::new(Full::new(Bytes::from_static(b"{}"))))
/// });
/// let service = ServiceBuilder::new()
///     .llm_retry(RetryLayer::default())
///     .llm_timeout(TimeoutLayer::new(Duration::from_secs(60)).unwrap())
///     .llm_normalize(NormalizeLayer::new())
///     .service(client);
/// let response = service.oneshot(http::Request::new(Full::new(Bytes::new()))).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed<L> + Sized {
    /// Normalizes every provider answer into a towline [`Error`](crate::Error); innermost.
    #[cfg(feature = "normalize")]
    fn llm_normalize(
        self,
        layer: crate::normalize::NormalizeLayer,
    ) -> ServiceBuilder<LayerStack<crate::normalize::NormalizeLayer, L>>;

    /// Retries what can succeed, within a shared budget, never before the provider's hint.
    #[cfg(feature = "retry")]
    fn llm_retry<P>(
        self,
        layer: crate::retry::RetryLayer<P>,
    ) -> ServiceBuilder<LayerStack<crate::retry::RetryLayer<P>, L>>;

    /// Bounds each attempt.
    #[cfg(feature = "retry")]
    fn llm_timeout(
        self,
        layer: crate::retry::TimeoutLayer,
    ) -> ServiceBuilder<LayerStack<crate::retry::TimeoutLayer, L>>;

    /// Opens a circuit per endpoint on surges of provider failures.
    #[cfg(feature = "breaker")]
    fn llm_breaker<X>(
        self,
        layer: crate::breaker::BreakerLayer<X>,
    ) -> ServiceBuilder<LayerStack<crate::breaker::BreakerLayer<X>, L>>;

    /// Spends each API key's rate evenly and obeys the provider's hints.
    #[cfg(feature = "throttle")]
    fn llm_throttle<K, E, F, St>(
        self,
        layer: crate::throttle::ThrottleLayer<K, E, F, St>,
    ) -> ServiceBuilder<LayerStack<crate::throttle::ThrottleLayer<K, E, F, St>, L>>;

    /// Serializes the turns of each conversation.
    #[cfg(feature = "session")]
    fn llm_session<E>(
        self,
        layer: crate::session::SessionLayer<E>,
    ) -> ServiceBuilder<LayerStack<crate::session::SessionLayer<E>, L>>;

    /// One OpenTelemetry span per call, with every decision as an event; outermost.
    #[cfg(feature = "trace")]
    fn llm_trace(
        self,
        layer: crate::trace::TraceLayer,
    ) -> ServiceBuilder<LayerStack<crate::trace::TraceLayer, L>>;

    /// One OpenTelemetry span per attempt, with `traceparent` injected; below the retry layer.
    #[cfg(feature = "trace")]
    fn llm_attempt_trace(
        self,
        layer: crate::trace::AttemptLayer,
    ) -> ServiceBuilder<LayerStack<crate::trace::AttemptLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "normalize")]
    fn llm_normalize(
        self,
        layer: crate::normalize::NormalizeLayer,
    ) -> ServiceBuilder<LayerStack<crate::normalize::NormalizeLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "retry")]
    fn llm_retry<P>(
        self,
        layer: crate::retry::RetryLayer<P>,
    ) -> ServiceBuilder<LayerStack<crate::retry::RetryLayer<P>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "retry")]
    fn llm_timeout(
        self,
        layer: crate::retry::TimeoutLayer,
    ) -> ServiceBuilder<LayerStack<crate::retry::TimeoutLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "breaker")]
    fn llm_breaker<X>(
        self,
        layer: crate::breaker::BreakerLayer<X>,
    ) -> ServiceBuilder<LayerStack<crate::breaker::BreakerLayer<X>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "throttle")]
    fn llm_throttle<K, E, F, St>(
        self,
        layer: crate::throttle::ThrottleLayer<K, E, F, St>,
    ) -> ServiceBuilder<LayerStack<crate::throttle::ThrottleLayer<K, E, F, St>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "session")]
    fn llm_session<E>(
        self,
        layer: crate::session::SessionLayer<E>,
    ) -> ServiceBuilder<LayerStack<crate::session::SessionLayer<E>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "trace")]
    fn llm_trace(
        self,
        layer: crate::trace::TraceLayer,
    ) -> ServiceBuilder<LayerStack<crate::trace::TraceLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "trace")]
    fn llm_attempt_trace(
        self,
        layer: crate::trace::AttemptLayer,
    ) -> ServiceBuilder<LayerStack<crate::trace::AttemptLayer, L>> {
        self.layer(layer)
    }
}
