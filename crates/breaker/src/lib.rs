//! towline-breaker: being written; see the issue tracker.
