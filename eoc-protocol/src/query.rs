//! Answers to the nearest queries, `GET /api/v1/sites/nearest` and
//! `GET /api/v1/teams/nearest`.
//!
//! The server fills these from its state under a read lock and serialises
//! them at once, so text fields borrow (`Cow`) rather than copy; a client
//! deserialising them gets owned values.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{SiteStatus, Skill, TeamStatus};

/// The answer to `GET /api/v1/sites/nearest`: sites nearest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NearestSites<'a> {
    /// At most `k` sites, by great-circle distance from the query point,
    /// nearest first.
    pub sites: Vec<NearestSite<'a>>,
}

/// One site of a nearest-sites answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NearestSite<'a> {
    /// The site's id.
    pub site_id: Cow<'a, str>,
    /// Name.
    pub name: Cow<'a, str>,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Great-circle metres from the query point.
    pub distance_m: f64,
    /// Persons it can hold.
    pub capacity: u32,
    /// Persons there now.
    pub occupancy: u32,
    /// Persons that active allocations send there.
    pub allocated: u32,
    /// Places left: capacity − occupancy − allocated for an open site, 0
    /// for a closed or full one.
    pub free: u32,
    /// Open, closed or full.
    pub status: SiteStatus,
}

/// The answer to `GET /api/v1/teams/nearest`: teams nearest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NearestTeams<'a> {
    /// At most `k` teams, by great-circle distance from the query point to
    /// their last position, nearest first.
    pub teams: Vec<NearestTeam<'a>>,
}

/// One team of a nearest-teams answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NearestTeam<'a> {
    /// The team's id.
    pub team_id: Cow<'a, str>,
    /// Name.
    pub name: Cow<'a, str>,
    /// Latitude of the last position.
    pub lat: f64,
    /// Longitude of the last position.
    pub lon: f64,
    /// Great-circle metres from the query point.
    pub distance_m: f64,
    /// Status.
    pub status: TeamStatus,
    /// Skills.
    pub skills: Cow<'a, [Skill]>,
}
