//! A per-attempt timeout: [`TimeoutLayer`] fails an attempt whose response head has not
//! arrived in time with [`Error::Timeout`](towline_core::Error::Timeout), which the retry layer
//! above retries like any other timeout.
//!
//! Put it below the retry layer (the default stack puts it just above Normalize) so that each
//! attempt gets its own timeout, while the retry layer's
//! [`deadline`](crate::RetryLayerBuilder::deadline) bounds the whole call. It bounds the wait
//! for the response *head*; a streamed body that is slow to finish is not cut.

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::TimeoutLayer;
pub use service::Timeout;
