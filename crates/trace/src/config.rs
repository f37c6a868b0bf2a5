use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;

use http::HeaderName;
use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span, Tracer, TracerProvider};
use opentelemetry::{Context, InstrumentationScope, Value};

use crate::describe::{DEFAULT_KEPT_QUERY, Endpoints, Models, is_credential_query};
use crate::error::ConfigError;
use crate::layer::TraceLayer;
use crate::metrics::Instruments;
use crate::telemetry::{ParentFn, Shared, TRACER_UNKNOWN};

/// The most [`TraceBuilder::body_peek_limit`] accepts: 1 MiB from each end of the body.
pub const MAX_BODY_PEEK_LIMIT: usize = 1 << 20;

/// The default [`TraceBuilder::body_peek_limit`]: 16 KiB from each end of the body, enough
/// for the keys around a long `messages` array.
pub const DEFAULT_BODY_PEEK_LIMIT: usize = 16 << 10;

/// The instrumentation scope of towline's tracer and meter.
fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("towline")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// Configures a [`TraceLayer`] and its [`AttemptLayer`](crate::AttemptLayer); checked by
/// [`build`](TraceBuilder::build).
///
/// By default spans go to the global tracer provider and metrics to the global meter provider,
/// both read when the layer is built (so install them first), and the trace context is injected
/// with the global propagator, read on each attempt.
///
/// ```
/// use opentelemetry_sdk::trace::SdkTracerProvider;
/// use opentelemetry_sdk::propagation::TraceContextPropagator;
/// use towline_trace::TraceLayer;
///
/// let provider = SdkTracerProvider::builder().build();
/// let layer = TraceLayer::builder()
///     .tracer_provider(&provider)
///     .propagator(TraceContextPropagator::new())
///     .provider_name("moonshot")
///     .keep_query_value("api-version")
///     .build()
///     .unwrap();
/// let attempts = layer.attempt_layer();
/// # let _ = attempts;
/// ```
pub struct TraceBuilder {
    tracer: Option<BoxedTracer>,
    meter: Option<Meter>,
    metrics: bool,
    propagator: Option<Arc<dyn TextMapPropagator + Send + Sync>>,
    provider_name: Option<Cow<'static, str>>,
    model_header: Option<HeaderName>,
    body_peek_limit: usize,
    kept_query: Vec<Cow<'static, str>>,
    parent: Option<ParentFn>,
}

impl fmt::Debug for TraceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceBuilder")
            .field("tracer", &self.tracer.is_some())
            .field("meter", &self.meter.is_some())
            .field("metrics", &self.metrics)
            .field("propagator", &self.propagator)
            .field("provider_name", &self.provider_name)
            .field("model_header", &self.model_header)
            .field("body_peek_limit", &self.body_peek_limit)
            .field("kept_query", &self.kept_query)
            .field("parent", &self.parent.is_some())
            .finish()
    }
}

impl Default for TraceBuilder {
    fn default() -> Self {
        TraceBuilder {
            tracer: None,
            meter: None,
            metrics: true,
            propagator: None,
            provider_name: None,
            model_header: None,
            body_peek_limit: DEFAULT_BODY_PEEK_LIMIT,
            kept_query: DEFAULT_KEPT_QUERY
                .iter()
                .map(|q| Cow::Borrowed(*q))
                .collect(),
            parent: None,
        }
    }
}

impl TraceBuilder {
    /// Spans go to a tracer of `provider` (an `SdkTracerProvider`, ...) instead of the global
    /// one.
    pub fn tracer_provider<P>(mut self, provider: &P) -> Self
    where
        P: TracerProvider,
        P::Tracer: Tracer + Send + Sync + 'static,
        <P::Tracer as Tracer>::Span: Span + Send + Sync + 'static,
    {
        self.tracer = Some(BoxedTracer::new(Box::new(
            provider.tracer_with_scope(scope()),
        )));
        self
    }

    /// Metrics go to a meter of `provider` (an `SdkMeterProvider`, ...) instead of the global
    /// one.
    pub fn meter_provider<P: MeterProvider>(mut self, provider: &P) -> Self {
        self.meter = Some(provider.meter_with_scope(scope()));
        self
    }

    /// Whether to record metrics at all (default: yes). Without an SDK meter provider, metrics
    /// cost about 5,000 instructions per call (describing the call, one attribute list on the
    /// stack per layer); turn them off to pay nothing.
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.metrics = enabled;
        self
    }

    /// Injects the trace context with `propagator` instead of the global one.
    pub fn propagator(
        mut self,
        propagator: impl TextMapPropagator + Send + Sync + 'static,
    ) -> Self {
        self.propagator = Some(Arc::new(propagator));
        self
    }

    /// The `gen_ai.provider.name` of every call, instead of guessing it from the host (which
    /// knows the well-known providers only: a gateway or a local endpoint gets none).
    pub fn provider_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.provider_name = Some(name.into());
        self
    }

    /// A request header naming the model, read when no [`RequestModel`](crate::RequestModel)
    /// extension does.
    pub fn model_header(mut self, header: HeaderName) -> Self {
        self.model_header = Some(header);
        self
    }

    /// How many bytes to scan from each end of a request body already in memory
    /// (`Full<Bytes>`, `String`) for its top-level `"model"` and `"stream"`; 0 turns the
    /// scan off. Default [`DEFAULT_BODY_PEEK_LIMIT`], at most [`MAX_BODY_PEEK_LIMIT`]. The
    /// scan copies nothing and skips strings with `memchr`; a streaming body is never read.
    pub fn body_peek_limit(mut self, bytes: usize) -> Self {
        self.body_peek_limit = bytes;
        self
    }

    /// Keeps the value of query parameter `name` in `url.full` (every other value is replaced
    /// by `REDACTED`). `api-version`, `alt` and `beta` are kept by default. Parameters that
    /// carry credentials are refused.
    pub fn keep_query_value(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.kept_query.push(name.into());
        self
    }

    /// Where a call's span gets its parent when the request's extensions hold no
    /// `opentelemetry::Context` (default: `Context::current()`). With `tracing-opentelemetry`,
    /// `|| tracing::Span::current().context()` parents calls under the current `tracing` span.
    pub fn parent_context(mut self, parent: impl Fn() -> Context + Send + Sync + 'static) -> Self {
        self.parent = Some(Arc::new(parent));
        self
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<TraceLayer, ConfigError> {
        let provider = self.provider_name.map(check_provider_name).transpose()?;
        if self.body_peek_limit > MAX_BODY_PEEK_LIMIT {
            return Err(ConfigError::BodyPeekLimit {
                limit: self.body_peek_limit,
                max: MAX_BODY_PEEK_LIMIT,
            });
        }
        for name in &self.kept_query {
            check_query_name(name)?;
        }
        let instruments = self.metrics.then(|| {
            let meter = self
                .meter
                .unwrap_or_else(|| global::meter_with_scope(scope()));
            Instruments::new(&meter)
        });
        let tracer = self
            .tracer
            .unwrap_or_else(|| global::tracer_provider().tracer_with_scope(scope()));
        Ok(TraceLayer::from_shared(Arc::new(Shared {
            tracer,
            tracer_state: AtomicU8::new(TRACER_UNKNOWN),
            propagator: self.propagator,
            instruments,
            endpoints: Endpoints::new(provider),
            models: Models::default(),
            model_header: self.model_header,
            body_peek_limit: self.body_peek_limit,
            kept_query: self.kept_query,
            parent: self.parent,
        })))
    }
}

fn check_provider_name(name: Cow<'static, str>) -> Result<Value, ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        // Shared, not owned: every call clones it into its attributes.
        let name: Value = match name {
            Cow::Borrowed(name) => name.into(),
            Cow::Owned(name) => Arc::<str>::from(name).into(),
        };
        Ok(name)
    } else {
        Err(ConfigError::ProviderName {
            name: name.into_owned(),
        })
    }
}

fn check_query_name(name: &str) -> Result<(), ConfigError> {
    let well_formed = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'&' | b'=' | b'#' | b'?'));
    if !well_formed {
        return Err(ConfigError::QueryParamName {
            name: name.to_owned(),
        });
    }
    if is_credential_query(name) {
        return Err(ConfigError::CredentialQueryParam {
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_is_rejected_naming_the_setting() {
        let cases = [
            (
                TraceBuilder::default().provider_name("Open AI"),
                "provider_name",
            ),
            (
                TraceBuilder::default().provider_name("x".repeat(65)),
                "provider_name",
            ),
            (
                TraceBuilder::default().body_peek_limit(MAX_BODY_PEEK_LIMIT + 1),
                "body_peek_limit",
            ),
            (
                TraceBuilder::default().keep_query_value(""),
                "keep_query_value",
            ),
            (
                TraceBuilder::default().keep_query_value("a=b"),
                "keep_query_value",
            ),
            (
                TraceBuilder::default().keep_query_value("KEY"),
                "keep_query_value",
            ),
            (
                TraceBuilder::default().keep_query_value("access_token"),
                "keep_query_value",
            ),
        ];
        for (builder, setting) in cases {
            let err = builder.build().unwrap_err();
            assert!(err.to_string().starts_with(setting), "{err}");
        }
    }

    #[test]
    fn sensible_settings_build() {
        TraceBuilder::default()
            .provider_name("azure.ai.openai")
            .body_peek_limit(0)
            .keep_query_value("stream")
            .metrics(false)
            .build()
            .unwrap();
    }
}
