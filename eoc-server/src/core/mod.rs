//! The sans-IO core: deterministic, synchronous, time passed in as ms since
//! the Unix epoch. Nothing here reads a clock, a socket or a file.

pub mod allocation;
pub mod engine;
pub mod geo;
pub mod impact;
pub mod index;
pub mod kdtree;
pub mod nearest;
pub mod synthetic;
pub mod world;

#[cfg(test)]
pub(crate) mod engine_tests;
