//! towline-session: being written; see the issue tracker.
