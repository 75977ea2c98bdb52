//! eoc: the real-time coordination server of an Emergency Operations Centre.
//!
//! # Layout
//! - [`core`]: the sans-IO heart. World model, spatial index, impact,
//!   allocation, dispatch and the [`core::engine::Engine`] that applies
//!   commands and returns deltas. No tokio, sockets or clock reads.
//! - [`scenario`]: loads a scenario directory into a [`core::world::World`],
//!   reporting every rejected row; builds the Tajikistan scenario from the
//!   shared source data.
//! - [`whatif`]: the planning command that prints an alert's impact.
//!
//! Data flow: edges parse bytes into [`core::engine::Command`]s (via
//! `eoc-protocol`), the writer applies them to the engine in order, and the
//! engine's deltas fan out to every client.

pub mod bus;
pub mod config;
pub mod core;
pub mod journal;
pub mod metrics;
pub mod scenario;
pub mod whatif;
pub mod writer;
