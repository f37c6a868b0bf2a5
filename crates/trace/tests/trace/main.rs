//! towline-trace against the OpenTelemetry SDK's in-memory span and metric exporters.

mod metrics;
mod normalized;
mod spans;
mod support;
