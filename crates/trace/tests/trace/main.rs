//! towline-trace against the OpenTelemetry SDK's in-memory span and metric exporters.

mod end_to_end;
mod metrics;
mod normalized;
mod real_layers;
mod spans;
mod support;
