//! towline-retry: being written; see the issue tracker.
