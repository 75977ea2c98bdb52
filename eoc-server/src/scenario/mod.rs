//! Scenario directories: loading them into a [`World`] and building the
//! Tajikistan one from its source data.
//!
//! A scenario directory holds `villages.csv`, `sites.csv`, `teams.csv`
//! (rows of [`eoc_protocol::scenario`]), the boundaries for the map, and its
//! attribution.

pub mod build;

use std::path::Path;

use crate::core::world::World;

/// What a load accepted and rejected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Rows accepted per file.
    pub accepted: Vec<(String, usize)>,
    /// Every rejected row: file, line, record id (if readable), field, why.
    pub rejected: Vec<RejectedRow>,
}

/// One rejected row of a scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRow {
    /// File name, e.g. `villages.csv`.
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    /// The record's id, if it could be read.
    pub id: Option<String>,
    /// The offending field.
    pub field: String,
    /// Why.
    pub reason: String,
}

/// Loads a scenario directory. Bad rows are skipped and reported; only an
/// unreadable directory or file is an error.
pub fn load(dir: &Path) -> anyhow::Result<(World, LoadReport)> {
    anyhow::bail!("scenario loading is not implemented yet: {}", dir.display())
}

/// `eoc-server scenario check DIR`: loads and prints the report.
pub fn check(dir: &Path) -> anyhow::Result<()> {
    let (_world, report) = load(dir)?;
    println!("{report:?}");
    Ok(())
}
