//! Scenario directories: loading them into a [`World`] and building the
//! Tajikistan one from its source data.
//!
//! A scenario directory holds `villages.csv`, `sites.csv`, `teams.csv`
//! (rows of [`eoc_protocol::scenario`]), the boundaries for the map, and its
//! attribution.
//!
//! Loading never trusts the files: every row is parsed and validated on its
//! own, a bad row is reported (file, line, id, field, reason) and skipped,
//! and the rest of the file still loads. Only a missing or unreadable file,
//! a file over [`MAX_FILE_BYTES`], or a header without a required column
//! makes the whole load fail.

mod admin;
pub mod build;
mod sites;
mod teams;
mod villages;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Read;
use std::path::Path;

use anyhow::Context;
use eoc_protocol::scenario::{SiteRecord, TeamRecord, VillageRecord};
use eoc_protocol::types::{Service, SiteKind, SiteStatus, Skill, TeamStatus};
use serde::de::DeserializeOwned;

use crate::core::geo::{CoordError, LatLon};
use crate::core::world::{Places, Site, Team, Village, World};

/// Largest scenario file read. The Tajikistan files are well under 1 MiB; a
/// national scenario with every OSM building would still fit, while a
/// runaway or hostile file cannot exhaust memory.
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// Most data rows read from one file; later rows are reported once and
/// ignored. Ten million villages is far beyond any country eoc serves.
pub const MAX_ROWS: u64 = 10_000_000;

/// Longest text quoted back from a bad row (ids and values), in characters,
/// so a garbage line does not flood the report.
const MAX_QUOTE_CHARS: usize = 64;

/// File names of a scenario directory.
pub const VILLAGES_FILE: &str = "villages.csv";
/// See [`VILLAGES_FILE`].
pub const SITES_FILE: &str = "sites.csv";
/// See [`VILLAGES_FILE`].
pub const TEAMS_FILE: &str = "teams.csv";

/// Values of `sites.csv` `capacity_source`.
pub const CAPACITY_SOURCES: &[&str] = &["floor_area", "grounds_estimate", "default", "osm", "override"];

/// What a load accepted and rejected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Rows accepted per file.
    pub accepted: Vec<(String, usize)>,
    /// Every rejected row: file, line, record id (if readable), field, why.
    pub rejected: Vec<RejectedRow>,
}

impl LoadReport {
    /// Rows accepted from `file` (0 if it was not read).
    pub fn accepted_in(&self, file: &str) -> usize {
        self.accepted.iter().find(|(f, _)| f == file).map_or(0, |(_, n)| *n)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (file, n) in &self.accepted {
            writeln!(f, "{file}: {n} rows accepted")?;
        }
        if self.rejected.is_empty() {
            writeln!(f, "no rows rejected")
        } else {
            writeln!(f, "{} rows rejected:", self.rejected.len())?;
            for r in &self.rejected {
                writeln!(f, "  {r}")?;
            }
            Ok(())
        }
    }
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

impl fmt::Display for RejectedRow {
    /// `villages.csv:17 (wof:123) lat: latitude 95 is not within -90..90`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(id) = &self.id {
            write!(f, " ({id})")?;
        }
        write!(f, " {}: {}", self.field, self.reason)
    }
}

/// Loads a scenario directory. Bad rows are skipped and reported; only an
/// unreadable directory or file is an error.
pub fn load(dir: &Path) -> anyhow::Result<(World, LoadReport)> {
    if !dir.is_dir() {
        anyhow::bail!("scenario directory {} does not exist or is not a directory", dir.display());
    }
    let mut places = Places::default();
    let mut report = LoadReport::default();

    let villages = load_file(
        dir,
        VILLAGES_FILE,
        &["id", "name", "region", "district", "lat", "lon", "population", "population_estimated"],
        &mut report,
        |r: &VillageRecord| r.id.clone(),
        |r| village_from(r, &mut places),
    )?;
    let sites = load_file(
        dir,
        SITES_FILE,
        &["id", "name", "kind", "region", "district", "lat", "lon", "capacity", "capacity_source", "status"],
        &mut report,
        |r: &SiteRecord| r.id.clone(),
        |r| site_from(r, &mut places),
    )?;
    let mut device_owner: HashMap<String, String> = HashMap::new();
    let teams = load_file(
        dir,
        TEAMS_FILE,
        &["id", "name", "skills", "district", "lat", "lon", "status"],
        &mut report,
        |r: &TeamRecord| r.id.clone(),
        |r| team_from(r, &mut device_owner),
    )?;
    let world = World::new(places, villages, sites, teams)
        .with_context(|| format!("assembling the world of {}", dir.display()))?;
    Ok((world, report))
}

/// `eoc-server scenario check DIR`: loads and prints the report.
pub fn check(dir: &Path) -> anyhow::Result<()> {
    let (world, report) = load(dir)?;
    print!("{report}");
    println!(
        "world: {} villages, {} sites, {} teams in {} districts",
        world.villages().len(),
        world.sites().len(),
        world.teams().len(),
        world.places.len()
    );
    Ok(())
}

/// Why a record could not become a world object: the field and the reason.
type FieldError = (&'static str, String);

/// Reads one CSV file of a scenario: every row is deserialised into `R`,
/// converted by `convert`, and either kept or reported. Ids are unique per
/// file: the first row with an id wins.
fn load_file<R, T>(
    dir: &Path,
    file: &str,
    required: &[&str],
    report: &mut LoadReport,
    id_of: impl Fn(&R) -> String,
    mut convert: impl FnMut(R) -> Result<T, FieldError>,
) -> anyhow::Result<Vec<T>>
where
    R: DeserializeOwned,
{
    let path = dir.join(file);
    let bytes = read_bounded(&path)?;
    let mut reader =
        csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(bytes.as_slice());
    let headers = reader.byte_headers().with_context(|| format!("reading the header of {file}"))?.clone();
    let names: Vec<String> = headers.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect();
    for column in required {
        if !names.iter().any(|n| n == column) {
            anyhow::bail!("{file}: header has no column {column:?} (found {names:?})");
        }
    }
    let id_col = names.iter().position(|n| n == "id");

    let mut out = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut record = csv::ByteRecord::new();
    let mut rows = 0u64;
    loop {
        let line_before = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(err) => {
                // A CSV syntax error: the reader resynchronises at the next
                // record, so report this one and carry on.
                let line = err.position().map_or(line_before, |p| p.line());
                report.rejected.push(reject(file, line, None, "row", format!("unreadable csv: {err}")));
                if matches!(err.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        }
        rows += 1;
        let line = record.position().map_or(line_before, |p| p.line());
        if rows > MAX_ROWS {
            report.rejected.push(reject(
                file,
                line,
                None,
                "row",
                format!("more than {MAX_ROWS} rows; the rest of the file is ignored"),
            ));
            break;
        }
        let raw_id = id_col.and_then(|i| record.get(i)).map(quote).filter(|s| !s.is_empty());
        if record.len() != headers.len() {
            let field = names.get(record.len().min(headers.len())).map_or("row", String::as_str);
            let reason = format!("row has {} fields, the header has {}", record.len(), headers.len());
            report.rejected.push(reject(file, line, raw_id, field, reason));
            continue;
        }
        let parsed: R = match record.deserialize(Some(&headers)) {
            Ok(r) => r,
            Err(err) => {
                let (field, reason) = match err.kind() {
                    csv::ErrorKind::Deserialize { err, .. } => {
                        describe_deserialize_error(err, &names, &record)
                    }
                    other => ("row".to_owned(), format!("unreadable row: {other:?}")),
                };
                report.rejected.push(reject(file, line, raw_id, &field, reason));
                continue;
            }
        };
        let id = id_of(&parsed);
        if id.is_empty() {
            report.rejected.push(reject(file, line, None, "id", "id is empty".into()));
            continue;
        }
        if let Some(first) = seen.get(&id) {
            let reason = format!("duplicate id, first defined on line {first}");
            report.rejected.push(reject(file, line, Some(quote(id.as_bytes())), "id", reason));
            continue;
        }
        match convert(parsed) {
            Ok(t) => {
                seen.insert(id, line);
                out.push(t);
            }
            Err((field, reason)) => {
                report.rejected.push(reject(file, line, Some(quote(id.as_bytes())), field, reason))
            }
        }
    }
    report.accepted.push((file.to_owned(), out.len()));
    Ok(out)
}

/// Reads a whole file, refusing one larger than [`MAX_FILE_BYTES`] (checked
/// while reading too, in case the file grows or is not a regular file).
fn read_bounded(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().with_context(|| format!("reading metadata of {}", path.display()))?.len();
    if len > MAX_FILE_BYTES {
        anyhow::bail!("{} is {len} bytes, more than the {MAX_FILE_BYTES} allowed", path.display());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        anyhow::bail!("{} is more than the {MAX_FILE_BYTES} bytes allowed", path.display());
    }
    Ok(bytes)
}

fn reject(file: &str, line: u64, id: Option<String>, field: &str, reason: String) -> RejectedRow {
    RejectedRow { file: file.to_owned(), line, id, field: field.to_owned(), reason }
}

/// Text from a row, lossily decoded and cut short for the report.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(MAX_QUOTE_CHARS).collect();
    if text.chars().count() > MAX_QUOTE_CHARS {
        out.push('…');
    }
    out
}

/// Names the column and says what was wrong with its value.
fn describe_deserialize_error(
    err: &csv::DeserializeError,
    names: &[String],
    record: &csv::ByteRecord,
) -> (String, String) {
    let index = err.field().and_then(|i| usize::try_from(i).ok());
    let value = index.and_then(|i| record.get(i)).map(quote).unwrap_or_default();
    let field = index.and_then(|i| names.get(i)).cloned();
    match err.kind() {
        csv::DeserializeErrorKind::Message(msg) => {
            // serde's "missing field `x`" names the field in the message.
            let named = msg.split('`').nth(1).filter(|_| msg.starts_with("missing field"));
            match (named, field) {
                (Some(name), _) => (name.to_owned(), "missing value".to_owned()),
                (None, Some(field)) => (field, format!("{msg}: {value:?}")),
                (None, None) => ("row".to_owned(), msg.clone()),
            }
        }
        csv::DeserializeErrorKind::InvalidUtf8(_) => {
            (field.unwrap_or_else(|| "row".into()), "not valid utf-8 text".into())
        }
        csv::DeserializeErrorKind::ParseBool(_) => {
            (field.unwrap_or_else(|| "row".into()), format!("expected true or false, got {value:?}"))
        }
        csv::DeserializeErrorKind::ParseInt(e) => {
            (field.unwrap_or_else(|| "row".into()), format!("not a whole number in range ({e}): {value:?}"))
        }
        csv::DeserializeErrorKind::ParseFloat(_) => {
            (field.unwrap_or_else(|| "row".into()), format!("not a number: {value:?}"))
        }
        other => (field.unwrap_or_else(|| "row".into()), format!("{other}: {value:?}")),
    }
}

fn lat_lon(lat: f64, lon: f64) -> Result<LatLon, FieldError> {
    LatLon::new(lat, lon).map_err(|e| match e {
        CoordError::Lat(_) => ("lat", e.to_string()),
        CoordError::Lon(_) => ("lon", e.to_string()),
    })
}

fn non_empty(field: &'static str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() { Err((field, format!("{field} is empty"))) } else { Ok(()) }
}

/// Splits a `;`-separated column, ignoring blanks around and between items.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(';').map(str::trim).filter(|s| !s.is_empty())
}

fn village_from(r: VillageRecord, places: &mut Places) -> Result<Village, FieldError> {
    non_empty("region", &r.region)?;
    non_empty("district", &r.district)?;
    let at = lat_lon(r.lat, r.lon)?;
    Ok(Village {
        district: places.intern(&r.region, &r.district),
        id: r.id,
        name: r.name,
        at,
        population: r.population,
        population_estimated: r.population_estimated,
        elevation_m: r.elevation_m,
    })
}

fn site_from(r: SiteRecord, places: &mut Places) -> Result<Site, FieldError> {
    non_empty("region", &r.region)?;
    non_empty("district", &r.district)?;
    let at = lat_lon(r.lat, r.lon)?;
    let kind: SiteKind = r.kind.parse().map_err(|e| ("kind", format!("{e}")))?;
    let status: SiteStatus = r.status.parse().map_err(|e| ("status", format!("{e}")))?;
    if !CAPACITY_SOURCES.contains(&r.capacity_source.as_str()) {
        return Err((
            "capacity_source",
            format!(
                "unknown capacity source {:?}, expected one of {CAPACITY_SOURCES:?}",
                quote(r.capacity_source.as_bytes())
            ),
        ));
    }
    if let Some(a) = r.floor_area_m2
        && !(a.is_finite() && a >= 0.0)
    {
        return Err(("floor_area_m2", format!("floor area {a} is not a non-negative number")));
    }
    if r.capacity == 0 && status == SiteStatus::Open {
        return Err(("capacity", "an open site cannot have capacity 0".into()));
    }
    let mut services = Vec::new();
    for s in list(&r.services) {
        let service: Service = s.parse().map_err(|e| ("services", format!("{e}")))?;
        if !services.contains(&service) {
            services.push(service);
        }
    }
    Ok(Site {
        district: places.intern(&r.region, &r.district),
        id: r.id,
        name: r.name,
        kind,
        at,
        capacity: r.capacity,
        occupancy: r.occupancy,
        status,
        services,
        updated_at_ms: None,
    })
}

fn team_from(r: TeamRecord, device_owner: &mut HashMap<String, String>) -> Result<Team, FieldError> {
    let at = lat_lon(r.lat, r.lon)?;
    let mut skills = Vec::new();
    for s in list(&r.skills) {
        let skill: Skill = s.parse().map_err(|e| ("skills", format!("{e}")))?;
        if !skills.contains(&skill) {
            skills.push(skill);
        }
    }
    if skills.is_empty() {
        return Err(("skills", "a team needs at least one skill".into()));
    }
    let status: TeamStatus = r.status.parse().map_err(|e| ("status", format!("{e}")))?;
    let mut devices: Vec<String> = Vec::new();
    let mut unique = HashSet::new();
    for d in list(&r.devices) {
        if let Some(owner) = device_owner.get(d) {
            return Err((
                "devices",
                format!("device {:?} is already mapped to team {owner:?}", quote(d.as_bytes())),
            ));
        }
        if unique.insert(d) {
            devices.push(d.to_owned());
        }
    }
    for d in &devices {
        device_owner.insert(d.clone(), r.id.clone());
    }
    Ok(Team {
        id: r.id,
        name: r.name,
        skills,
        status,
        at,
        accuracy_m: None,
        position_at_ms: None,
        battery_pct: None,
        last_seen_ms: None,
        devices,
    })
}
