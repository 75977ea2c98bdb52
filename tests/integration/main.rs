//! Black-box integration tests: real sockets, real SQLite, the server
//! started by `run` on `127.0.0.1:0` with a temporary data directory.

// Helpers here are test code too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod cap;
mod durability;
mod http;
mod mqtt;
mod nearest;
mod ops;
mod phones;
mod writer;
mod ws;
