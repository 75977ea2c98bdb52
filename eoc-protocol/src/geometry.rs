//! Alert geometry: an earthquake source, or an area (GeoJSON Polygon or
//! MultiPolygon, or a circle). GeoJSON positions are `[lon, lat]`; everything
//! else names its axes (`lat`, `lon`) and units (`depth_km`, `radius_m`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A GeoJSON position: `[lon, lat]` in decimal degrees (WGS84).
pub type Position = [f64; 2];

/// An earthquake source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EarthquakeSource {
    /// Epicentre latitude, degrees north, −90..90.
    pub lat: f64,
    /// Epicentre longitude, degrees east, −180..180.
    pub lon: f64,
    /// Hypocentre depth in km, 0..700. Absent: the fixed-depth form of the
    /// intensity equation (h = 15 km) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth_km: Option<f64>,
    /// Moment magnitude, 0..10 (the intensity equation is calibrated for 4.6–8.3).
    pub magnitude: f64,
}

/// The area of an area hazard (mudslide, flood, avalanche).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum AreaGeometry {
    /// GeoJSON Polygon: an outer ring and optional holes, each closed
    /// (first position equals last), at least four positions.
    Polygon {
        /// Rings of `[lon, lat]` positions.
        coordinates: Vec<Vec<Position>>,
    },
    /// GeoJSON MultiPolygon.
    MultiPolygon {
        /// Polygons, each a list of rings of `[lon, lat]` positions.
        coordinates: Vec<Vec<Vec<Position>>>,
    },
    /// A circle on the ground (not GeoJSON): centre and great-circle radius.
    Circle {
        /// Centre latitude, degrees.
        lat: f64,
        /// Centre longitude, degrees.
        lon: f64,
        /// Radius in metres, > 0 and at most 1,000 km.
        radius_m: f64,
    },
}
