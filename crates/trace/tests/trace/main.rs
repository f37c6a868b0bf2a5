//! towline-trace against the OpenTelemetry SDK's in-memory span and metric exporters.

mod metrics;
mod secrets;
mod spans;
mod support;
