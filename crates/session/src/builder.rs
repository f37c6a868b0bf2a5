use std::time::Duration;

use http::HeaderName;
use towline_core::SessionHeader;

use crate::error::ConfigError;
use crate::layer::SessionLayer;

/// Configures a [`SessionLayer`]; [`build`](SessionLayerBuilder::build) validates the settings.
///
/// ```
/// use std::time::Duration;
/// use towline_session::SessionLayer;
///
/// // Conversations identified by an id the application put in the request's extensions.
/// #[derive(Clone, Debug, PartialEq, Eq, Hash)]
/// struct ConversationId(u64);
///
/// let layer = SessionLayer::builder()
///     .key_extractor(|req: &http::Request<String>| req.extensions().get::<ConversationId>().cloned())
///     .max_queue_depth(0) // refuse a turn while another one runs, instead of queueing it
///     .build()
///     .unwrap();
/// assert_eq!(layer.max_queue_depth(), 0);
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct SessionLayerBuilder<E = SessionHeader> {
    extractor: E,
    /// A setting rejected when it was given, reported by `build`.
    invalid: Option<ConfigError>,
    max_queue_depth: usize,
    max_wait: Option<Duration>,
}

impl SessionLayerBuilder {
    pub(crate) fn new() -> Self {
        SessionLayerBuilder {
            extractor: SessionHeader::default(),
            invalid: None,
            max_queue_depth: SessionLayer::DEFAULT_MAX_QUEUE_DEPTH,
            max_wait: Some(SessionLayer::DEFAULT_MAX_WAIT),
        }
    }
}

impl<E> SessionLayerBuilder<E> {
    /// Keys sessions by the header `name` (hashed, like the default `x-session-id`). An
    /// invalid header name is reported by [`build`](Self::build), as setting `session_header`.
    ///
    /// ```
    /// use towline_session::SessionLayer;
    ///
    /// assert!(SessionLayer::builder().session_header("x-conversation-id").build().is_ok());
    /// let err = SessionLayer::builder().session_header("not a header").build().unwrap_err();
    /// assert_eq!(err.setting(), "session_header");
    /// ```
    pub fn session_header(self, name: &str) -> SessionLayerBuilder<SessionHeader> {
        let (header, invalid) = match HeaderName::try_from(name) {
            Ok(header) => (SessionHeader::new(header), None),
            Err(_) => (
                SessionHeader::default(),
                Some(ConfigError::new(
                    "session_header",
                    "not a valid HTTP header name",
                )),
            ),
        };
        SessionLayerBuilder {
            extractor: header,
            invalid: self.invalid.or(invalid),
            max_queue_depth: self.max_queue_depth,
            max_wait: self.max_wait,
        }
    }

    /// Keys sessions with `extractor`: any [`towline_core::KeyExtractor`], including a closure
    /// `Fn(&Request<B>) -> Option<K>`. Requests for which it returns `None` pass straight
    /// through.
    pub fn key_extractor<E2>(self, extractor: E2) -> SessionLayerBuilder<E2> {
        SessionLayerBuilder {
            extractor,
            invalid: self.invalid,
            max_queue_depth: self.max_queue_depth,
            max_wait: self.max_wait,
        }
    }

    /// How many requests may wait behind the running turn of one session; one more is refused
    /// at once with [`towline_core::SessionQueueReason::Full`]. Zero refuses any request
    /// that finds its session busy. Default: 16.
    pub fn max_queue_depth(mut self, depth: usize) -> Self {
        self.max_queue_depth = depth;
        self
    }

    /// How long a request may wait for its session's slot before it fails with
    /// [`towline_core::SessionQueueReason::WaitTooLong`]. Must be more than zero (use
    /// `max_queue_depth(0)` to refuse busy sessions outright). Default: 5 minutes.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = Some(wait);
        self
    }

    /// Lets requests wait for their session's slot for as long as it takes.
    pub fn no_max_wait(mut self) -> Self {
        self.max_wait = None;
        self
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<SessionLayer<E>, ConfigError> {
        if let Some(invalid) = self.invalid {
            return Err(invalid);
        }
        if self.max_wait == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "max_wait",
                "must be more than zero; use max_queue_depth(0) to refuse busy sessions",
            ));
        }
        Ok(SessionLayer::from_parts(
            self.extractor,
            self.max_queue_depth,
            self.max_wait,
        ))
    }
}
