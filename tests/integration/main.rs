//! Black-box integration tests.
