//! towline-mock: being written; see the issue tracker.
