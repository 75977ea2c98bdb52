//! Answers to the nearest queries, `GET /api/v1/sites/nearest` and
//! `GET /api/v1/teams/nearest`.
//!
//! The server fills these from its state under a read lock and serialises
//! them at once, so text fields borrow (`Cow`) rather than copy; a client
//! deserialising them gets owned values.
//!
//! The query strings of both are read here ([`site_params`],
//! [`team_params`]): bounded in size, each bad parameter refused with a
//! problem that names it (and fuzzed, `fuzz/fuzz_targets/nearest_query.rs`).

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{SiteStatus, Skill, TeamStatus};
use crate::validate::Problems;

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

// ---- the query strings ----------------------------------------------------

/// Longest query string read, bytes: six short parameters fit many times
/// over, and the bound keeps a hostile one from costing anything.
pub const MAX_QUERY_BYTES: usize = 2_048;

/// Most results one query returns: enough for any operator's list, and it
/// bounds the work and the answer (about 200 bytes per site).
pub const MAX_K: usize = 100;

/// Results when `k` is not given.
pub const DEFAULT_K: usize = 5;

/// Largest `radius_m`: half the Earth's circumference (≈ 20,015 km) covers
/// the whole globe, so a larger radius is a mistake.
pub const MAX_RADIUS_M: f64 = 20_100_000.0;

/// Largest `room`: more than any site holds.
pub const MAX_ROOM: u32 = 1_000_000;

/// The parameters of `GET /api/v1/sites/nearest`, read and bounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiteParams {
    /// Latitude of the query point, −90..90.
    pub lat: f64,
    /// Longitude of the query point, −180..180.
    pub lon: f64,
    /// How many sites, 1..=[`MAX_K`] ([`DEFAULT_K`] when not given).
    pub k: usize,
    /// Free places a site must have (1 unless closed sites are asked for).
    pub room: u32,
    /// Whether closed and full sites are listed too.
    pub include_closed: bool,
    /// Only sites within this many metres, when given.
    pub radius_m: Option<f64>,
}

/// The parameters of `GET /api/v1/teams/nearest`, read and bounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TeamParams {
    /// Latitude of the query point, −90..90.
    pub lat: f64,
    /// Longitude of the query point, −180..180.
    pub lon: f64,
    /// How many teams, 1..=[`MAX_K`].
    pub k: usize,
    /// Only teams with this skill.
    pub skill: Option<Skill>,
    /// Only available teams.
    pub available_only: bool,
    /// Only teams within this many metres, when given.
    pub radius_m: Option<f64>,
}

/// The values of the parameters `names` in `query`, in that order; an
/// unknown or repeated parameter, or a query string over
/// [`MAX_QUERY_BYTES`], is an error naming it.
fn params<'q, const N: usize>(
    query: &'q str,
    names: [&str; N],
) -> Result<[Option<Cow<'q, str>>; N], Problems> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(Problems::one(
            "too_large",
            "",
            format!("the query string is {} bytes, the limit is {MAX_QUERY_BYTES}", query.len()),
        ));
    }
    let mut out: [Option<Cow<'q, str>>; N] = std::array::from_fn(|_| None);
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let Some(i) = names.iter().position(|n| *n == key) else {
            let key: String = key.chars().take(64).collect();
            return Err(Problems::one(
                "not_allowed",
                &key,
                format!("unknown parameter {key:?}, expected one of {}", names.join(", ")),
            ));
        };
        if out[i].is_some() {
            return Err(Problems::one("conflict", names[i], format!("{} is given more than once", names[i])));
        }
        out[i] = Some(value);
    }
    Ok(out)
}

/// A finite number.
fn number(field: &str, text: &str) -> Result<f64, Problems> {
    let x: f64 = text.trim().parse().map_err(|_| {
        let shown: String = text.chars().take(32).collect();
        Problems::one("invalid_type", field, format!("{field} {shown:?} is not a number"))
    })?;
    if !x.is_finite() {
        return Err(Problems::one("not_finite", field, format!("{field} must be a finite number")));
    }
    Ok(x)
}

/// The required point `lat`, `lon`.
fn point(lat: Option<&str>, lon: Option<&str>) -> Result<(f64, f64), Problems> {
    let lat =
        number("lat", lat.ok_or_else(|| Problems::one("required", "lat", "lat is required".to_owned()))?)?;
    let lon =
        number("lon", lon.ok_or_else(|| Problems::one("required", "lon", "lon is required".to_owned()))?)?;
    if !(-90.0..=90.0).contains(&lat) {
        return Err(Problems::one("out_of_range", "lat", format!("latitude {lat} is not within -90..90")));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(Problems::one("out_of_range", "lon", format!("longitude {lon} is not within -180..180")));
    }
    Ok((lat, lon))
}

/// An integer in `lo..=hi`.
fn integer(field: &str, text: &str, lo: u64, hi: u64) -> Result<u64, Problems> {
    let n: u64 = text.trim().parse().map_err(|_| {
        let shown: String = text.chars().take(32).collect();
        Problems::one("invalid_type", field, format!("{field} {shown:?} is not an integer within {lo}..{hi}"))
    })?;
    if !(lo..=hi).contains(&n) {
        return Err(Problems::one("out_of_range", field, format!("{field} {n} is not within {lo}..{hi}")));
    }
    Ok(n)
}

fn k_param(text: Option<&str>) -> Result<usize, Problems> {
    text.map_or(Ok(DEFAULT_K), |t| integer("k", t, 1, MAX_K as u64).map(|k| k as usize))
}

fn radius_param(text: Option<&str>) -> Result<Option<f64>, Problems> {
    text.map(|t| {
        let r = number("radius_m", t)?;
        if r > 0.0 && r <= MAX_RADIUS_M {
            Ok(r)
        } else {
            Err(Problems::one(
                "out_of_range",
                "radius_m",
                format!("radius_m {r} is not within 0 (excluded)..{MAX_RADIUS_M}"),
            ))
        }
    })
    .transpose()
}

fn flag(field: &str, text: Option<&str>) -> Result<bool, Problems> {
    match text {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => {
            let shown: String = other.chars().take(32).collect();
            Err(Problems::one("invalid_type", field, format!("{field} {shown:?} is not true or false")))
        }
    }
}

/// Reads the query string of `GET /api/v1/sites/nearest`; each bad
/// parameter is refused with a problem naming it.
pub fn site_params(query: &str) -> Result<SiteParams, Problems> {
    let [lat, lon, k, room, radius_m, include_closed] =
        params(query, ["lat", "lon", "k", "room", "radius_m", "include_closed"])?;
    let (lat, lon) = point(lat.as_deref(), lon.as_deref())?;
    let k = k_param(k.as_deref())?;
    let include_closed = flag("include_closed", include_closed.as_deref())?;
    // A closed or full site has no free place: listing them means not
    // asking for room, unless the caller says otherwise.
    let room = match room.as_deref() {
        None => u32::from(!include_closed),
        Some(t) => integer("room", t, 0, u64::from(MAX_ROOM))? as u32,
    };
    let radius_m = radius_param(radius_m.as_deref())?;
    Ok(SiteParams { lat, lon, k, room, include_closed, radius_m })
}

/// Reads the query string of `GET /api/v1/teams/nearest`; each bad
/// parameter is refused with a problem naming it.
pub fn team_params(query: &str) -> Result<TeamParams, Problems> {
    let [lat, lon, k, skill, available, radius_m] =
        params(query, ["lat", "lon", "k", "skill", "available", "radius_m"])?;
    let (lat, lon) = point(lat.as_deref(), lon.as_deref())?;
    let k = k_param(k.as_deref())?;
    let skill = skill
        .as_deref()
        .map(|t| {
            t.parse::<Skill>().map_err(|err| {
                let expected = err.expected.join(", ");
                Problems::one(
                    "invalid_type",
                    "skill",
                    format!("skill {:?} is not one of {expected}", err.value),
                )
            })
        })
        .transpose()?;
    let available_only = flag("available", available.as_deref())?;
    let radius_m = radius_param(radius_m.as_deref())?;
    Ok(TeamParams { lat, lon, k, skill, available_only, radius_m })
}
