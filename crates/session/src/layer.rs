use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;
use towline_core::SessionHeader;

use crate::builder::SessionLayerBuilder;
use crate::queue::{SessionMonitor, Sessions};
use crate::service::Session;

/// Serializes the requests of each conversation: one at a time, in arrival order, each holding
/// its session until its response body has ended.
///
/// Build it with [`SessionLayer::new`] (defaults: `x-session-id` header, 16 waiting requests
/// per session at most, 5 minutes of waiting at most) or [`SessionLayer::builder`].
///
/// All services built by one layer (or by its clones), and their clones, share one set of
/// sessions, so a conversation is serialized however the layer is applied. Build a second
/// layer for an independent set. Keep a [`SessionMonitor`] from
/// [`SessionLayer::monitor`] to count live sessions and waiters.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use towline_session::SessionLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = SessionLayer::builder()
///     .max_queue_depth(4)
///     .max_wait(Duration::from_secs(60))
///     .build()?;
/// let svc = ServiceBuilder::new().layer(layer).service(service_fn(|_req: http::Request<()>| async {
///     Ok::<_, towline_core::Error>(http::Response::new(String::new()))
/// }));
/// let req = http::Request::builder().header("x-session-id", "conv-42").body(())?;
/// let res = svc.oneshot(req).await?;
/// assert_eq!(res.status(), 200);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SessionLayer<E = SessionHeader> {
    pub(crate) extractor: E,
    pub(crate) sessions: Arc<Sessions>,
}

impl SessionLayer {
    /// The default maximum number of requests waiting per session.
    pub const DEFAULT_MAX_QUEUE_DEPTH: usize = 16;
    /// The default maximum wait of a request for its session's slot.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5 * 60);

    /// A layer with the default settings, keyed by the `x-session-id` header.
    pub fn new() -> Self {
        SessionLayer::from_parts(
            SessionHeader::default(),
            Self::DEFAULT_MAX_QUEUE_DEPTH,
            Some(Self::DEFAULT_MAX_WAIT),
        )
    }

    /// A builder starting from the default settings.
    pub fn builder() -> SessionLayerBuilder {
        SessionLayerBuilder::new()
    }
}

impl Default for SessionLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> SessionLayer<E> {
    pub(crate) fn from_parts(
        extractor: E,
        max_queue_depth: usize,
        max_wait: Option<Duration>,
    ) -> Self {
        SessionLayer {
            extractor,
            sessions: Arc::new(Sessions::new(max_queue_depth, max_wait)),
        }
    }

    /// A handle that counts this layer's live sessions and waiting requests.
    pub fn monitor(&self) -> SessionMonitor {
        SessionMonitor {
            sessions: self.sessions.clone(),
        }
    }

    /// The maximum number of requests waiting per session.
    pub fn max_queue_depth(&self) -> usize {
        self.sessions.max_queue_depth
    }

    /// The maximum wait for a session's slot, if bounded.
    pub fn max_wait(&self) -> Option<Duration> {
        self.sessions.max_wait
    }
}

impl<S, E: Clone> Layer<S> for SessionLayer<E> {
    type Service = Session<S, E>;

    fn layer(&self, inner: S) -> Self::Service {
        Session::new(inner, self)
    }
}
