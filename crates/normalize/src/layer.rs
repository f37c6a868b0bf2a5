use tower_layer::Layer;

use crate::Normalize;
use crate::config::{Builder, Config};

/// Applies [`Normalize`] to a client service: every answer of every provider dialect becomes
/// either an untouched success or one typed [`towline_core::Error`].
///
/// ```
/// use tower::ServiceBuilder;
/// use towline_normalize::NormalizeLayer;
///
/// # let client = tower::service_fn(|_: http::Request<String>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
/// # });
/// let service = ServiceBuilder::new()
///     .layer(NormalizeLayer::new())
///     .service(client);
/// ```
#[derive(Debug, Clone, Default)]
pub struct NormalizeLayer {
    config: Config,
}

impl NormalizeLayer {
    /// The layer with the default settings (64 KiB / 5 s error body, SSE scanning and first
    /// event peeking on, kimi-free-api HTTP-200 inspection off).
    pub fn new() -> Self {
        NormalizeLayer::default()
    }

    /// A builder to change the settings; see [`Builder`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        NormalizeLayer { config }
    }
}

impl<S> Layer<S> for NormalizeLayer {
    type Service = Normalize<S>;

    fn layer(&self, inner: S) -> Normalize<S> {
        Normalize::with_config(inner, self.config)
    }
}
