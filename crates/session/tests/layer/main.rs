//! Behaviour of the session layer over a scripted provider, on paused time.

mod bounds;
mod cancel;
mod order;
mod streaming;
mod support;
