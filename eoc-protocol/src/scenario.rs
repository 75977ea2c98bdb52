//! Record types of a scenario directory (`config/scenarios/NAME/`): one CSV
//! row per village, site and team. Multi-valued columns are `;`-separated.

use serde::{Deserialize, Serialize};

/// One row of `villages.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VillageRecord {
    /// Stable id (e.g. `wof:1209040867`).
    pub id: String,
    /// Name in Latin script.
    pub name: String,
    /// Region (ADM1).
    pub region: String,
    /// District (ADM2).
    pub district: String,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Residents.
    pub population: u32,
    /// Whether `population` is an estimate (from district totals).
    pub population_estimated: bool,
    /// Elevation, metres.
    #[serde(default)]
    pub elevation_m: Option<i32>,
}

/// One row of `sites.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteRecord {
    /// Stable id (e.g. `osm:way:721093873`).
    pub id: String,
    /// Name.
    pub name: String,
    /// `school`, `kindergarten`, `college`, `health`, `camp`, `border_point`, `other`.
    pub kind: String,
    /// Region (ADM1).
    pub region: String,
    /// District (ADM2).
    pub district: String,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Persons it can hold.
    pub capacity: u32,
    /// How `capacity` was obtained: `floor_area`, `grounds_estimate`, `default`,
    /// `osm`, `override`.
    pub capacity_source: String,
    /// Covered floor area used for the capacity, m².
    #[serde(default)]
    pub floor_area_m2: Option<f64>,
    /// Persons there at the start.
    #[serde(default)]
    pub occupancy: u32,
    /// `open`, `closed` or `full`.
    pub status: String,
    /// `;`-separated services: water, sanitation, health, heating.
    #[serde(default)]
    pub services: String,
}

/// One row of `teams.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamRecord {
    /// Stable id (e.g. `react-khatlon-01`).
    pub id: String,
    /// Name.
    pub name: String,
    /// `;`-separated skills.
    pub skills: String,
    /// Home district.
    pub district: String,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Initial status.
    pub status: String,
    /// `;`-separated device ids (OwnTracks `user/device`, OsmAnd/Traccar ids).
    #[serde(default)]
    pub devices: String,
}
