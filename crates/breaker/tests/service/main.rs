//! Behaviour of the breaker service, driven by a fake clock and hand-polled futures.

mod body;
mod keys;
mod props;
mod support;
mod transitions;
