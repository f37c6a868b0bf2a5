//! towline-trace: being written; see the issue tracker.
