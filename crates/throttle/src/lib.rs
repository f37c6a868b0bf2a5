//! towline-throttle: being written; see the issue tracker.
