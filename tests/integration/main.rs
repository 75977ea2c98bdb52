//! Black-box integration tests.
mod mqtt;
