//! Shared helpers for the black-box tests.

pub mod mosquitto;
