//! towline-normalize: being written; see the issue tracker.
