//! `eoc-server whatif`: the impact of a hypothetical hazard, as tables or JSON.

use std::path::PathBuf;

/// Arguments of `eoc-server whatif`.
#[derive(Debug, clap::Args)]
pub struct WhatifArgs {
    /// The scenario directory.
    #[arg(long, default_value = "config/scenarios/tajikistan")]
    pub scenario: PathBuf,
    /// An earthquake: LAT,LON,DEPTH_KM,MAG (DEPTH_KM may be empty for the fixed-depth form).
    #[arg(long, conflicts_with_all = ["hazard", "area"])]
    pub earthquake: Option<String>,
    /// An area hazard: flood, mudslide or avalanche (with --area).
    #[arg(long, requires = "area")]
    pub hazard: Option<String>,
    /// GeoJSON file with the hazard area (Polygon, MultiPolygon, a Feature or FeatureCollection of them).
    #[arg(long)]
    pub area: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: &WhatifArgs) -> anyhow::Result<()> {
    anyhow::bail!("whatif is not implemented yet: {}", args.scenario.display())
}
