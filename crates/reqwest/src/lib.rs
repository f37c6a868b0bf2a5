//! towline-reqwest: being written; see the issue tracker.
