//! Builds `config/scenarios/tajikistan` from `shared/data/tajikistan`.
//!
//! The build is deterministic: the same input gives byte-identical output.
//! Rows are sorted by id, coordinates are rounded to six decimals (about
//! 0.1 m) and floor areas to 0.1 m² before they are written, and nothing
//! depends on hash order, time or the machine. The method and every
//! assumption are in the scenario's `README.md`; the constants live in the
//! `villages`, `sites` and `teams` modules next to this one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Map, Value};

use super::admin::{Admin, OUTSIDE};
use super::{SITES_FILE, TEAMS_FILE, VILLAGES_FILE, sites, teams, villages};

/// File with each district's 2020 total and how it was spread.
pub const POPULATION_TOTALS_FILE: &str = "population_totals.csv";

/// `eoc-server scenario build --from DIR --out DIR`.
pub fn run(from: &Path, out: &Path) -> anyhow::Result<()> {
    let summary = build(from, out)?;
    print!("{summary}");
    Ok(())
}

/// Builds the scenario into `out` and returns a printable summary.
pub fn build(from: &Path, out: &Path) -> anyhow::Result<String> {
    if !from.is_dir() {
        anyhow::bail!("source data directory {} does not exist", from.display());
    }
    let admin = Admin::load(&from.join("boundaries"))?;
    let villages = villages::build(from).context("building villages")?;
    let (sites, site_summary) = sites::build(from, &admin).context("building sites")?;
    let points = district_points(&from.join("admin-divisions/all-district.json"), &admin)?;
    let teams = teams::build(&villages.records, &villages.seats, &points).context("building teams")?;

    std::fs::create_dir_all(out.join("boundaries")).with_context(|| format!("creating {}", out.display()))?;
    write_csv(&out.join(VILLAGES_FILE), &villages.records)?;
    write_csv(&out.join(SITES_FILE), &sites)?;
    write_csv(&out.join(TEAMS_FILE), &teams)?;
    villages::write_totals(&out.join(POPULATION_TOTALS_FILE), &villages.totals)?;
    for (level, keep) in [("ADM0", "adm0"), ("ADM1", "adm1"), ("ADM2", "adm2")] {
        let src = from.join(format!("boundaries/geoBoundaries-TJK-{level}_simplified.geojson"));
        trim_boundaries(&src, &out.join(format!("boundaries/{keep}.geojson")))?;
    }
    std::fs::write(out.join("ATTRIBUTION.md"), ATTRIBUTION).context("writing ATTRIBUTION.md")?;

    // Summary.
    let mut s = String::new();
    let v = &villages.records;
    let estimated = v.iter().filter(|r| r.population_estimated).count();
    let population: u64 = v.iter().map(|r| u64::from(r.population)).sum();
    let inside: u64 = v.iter().filter(|r| r.region != OUTSIDE).map(|r| u64::from(r.population)).sum();
    let totals: u64 = villages.totals.iter().map(|t| t.total_2020).sum();
    let _ = writeln!(s, "{VILLAGES_FILE}: {} rows, {estimated} with an estimated population", v.len());
    let _ = writeln!(
        s,
        "  {} destroyed/abandoned (population 0), {} outside Tajikistan",
        villages.ruins, villages.outside
    );
    let _ = writeln!(
        s,
        "  population {population} ({inside} inside Tajikistan) vs 2020 district totals {totals} ({:+.2}%)",
        (inside as f64 - totals as f64) / totals as f64 * 100.0
    );
    let mut regions: Vec<&str> = villages.totals.iter().map(|t| t.region.as_str()).collect();
    regions.dedup();
    for region in regions {
        let total: u64 = villages.totals.iter().filter(|t| t.region == region).map(|t| t.total_2020).sum();
        let got: u64 = v.iter().filter(|r| r.region == region).map(|r| u64::from(r.population)).sum();
        let _ = writeln!(s, "    {region}: {got} vs {total}");
    }
    let _ = writeln!(s, "{SITES_FILE}: {} rows, capacity {} persons", sites.len(), site_summary.capacity);
    let _ = writeln!(s, "  by kind: {:?}", site_summary.by_kind);
    let _ = writeln!(s, "  by capacity source: {:?}", site_summary.by_capacity_source);
    let _ = writeln!(s, "  read: {:?}", site_summary.read);
    let _ = writeln!(
        s,
        "  duplicate osm ids {}, buildings merged into grounds {}, points merged into polygons {}, outside Tajikistan {}",
        site_summary.duplicate_ids,
        site_summary.merged_buildings,
        site_summary.merged_points,
        site_summary.outside
    );
    let _ = writeln!(s, "  excluded: {:?}", site_summary.excluded);
    let _ = writeln!(s, "{TEAMS_FILE}: {} rows", teams.len());
    Ok(s)
}

/// The Open Admin Data point of each district polygon (the first by unit id
/// when several units fall in one polygon, e.g. Ghafurov with Khujand and
/// three more cities). Keyed by district name as [`Admin::locate`] gives it.
fn district_points(path: &Path, admin: &Admin) -> anyhow::Result<BTreeMap<String, (f64, f64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let units: Vec<Value> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut points: Vec<(String, f64, f64)> = units
        .iter()
        .filter_map(|u| {
            let id = u.get("id")?.as_str()?.to_owned();
            let geo = u.get("geo")?;
            let coord = |k: &str| geo.get(k).and_then(Value::as_str).and_then(|s| s.parse::<f64>().ok());
            Some((id, coord("lat")?, coord("lon")?))
        })
        .collect();
    points.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = BTreeMap::new();
    for (_, lat, lon) in points {
        if let Some((_, district)) = admin.locate(geo::Point::new(lon, lat)) {
            out.entry(district).or_insert((lat, lon));
        }
    }
    Ok(out)
}

fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    for row in rows {
        w.serialize(row).with_context(|| format!("writing {}", path.display()))?;
    }
    w.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Copies a geoBoundaries file keeping only `shapeName` and `shapeISO` of
/// each feature: the map needs names, not the build's ids.
fn trim_boundaries(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(src).with_context(|| format!("reading {}", src.display()))?;
    let doc: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", src.display()))?;
    let features = doc
        .get("features")
        .and_then(Value::as_array)
        .with_context(|| format!("{} is not a feature collection", src.display()))?;
    let trimmed: Vec<Value> = features
        .iter()
        .map(|f| {
            let mut props = Map::new();
            for key in ["shapeName", "shapeISO"] {
                if let Some(v) = f.get("properties").and_then(|p| p.get(key)) {
                    props.insert(key.to_owned(), v.clone());
                }
            }
            let mut feature = Map::new();
            feature.insert("type".into(), Value::from("Feature"));
            feature.insert("properties".into(), Value::Object(props));
            let mut geometry = f.get("geometry").cloned().unwrap_or(Value::Null);
            round_coordinates(&mut geometry);
            feature.insert("geometry".into(), geometry);
            Value::Object(feature)
        })
        .collect();
    let mut out = Map::new();
    out.insert("type".into(), Value::from("FeatureCollection"));
    out.insert("features".into(), Value::Array(trimmed));
    let mut text = serde_json::to_string(&Value::Object(out))?;
    text.push('\n');
    std::fs::write(dst, text).with_context(|| format!("writing {}", dst.display()))
}

/// Rounds every number in a geometry to 7 decimals (about 1 cm, the
/// precision of the source). The written file then does not depend on the
/// last bit of float parsing, which differs between serde_json builds.
fn round_coordinates(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(round_coordinates),
        Value::Object(map) => map.values_mut().for_each(round_coordinates),
        Value::Number(n) => {
            if let Some(x) = n.as_f64().filter(|x| x.fract() != 0.0) {
                let r = (x * 1e7).round() / 1e7;
                if let Some(num) = serde_json::Number::from_f64(r) {
                    *n = num;
                }
            }
        }
        _ => {}
    }
}

/// `ATTRIBUTION.md` of the built scenario: the credit lines the source
/// licences require.
const ATTRIBUTION: &str = "# Attribution

This scenario is derived from the following data. Each licence requires the credit shown.

- **Settlements**: Data from Who's On First (https://whosonfirst.org/), licence
  https://whosonfirst.org/docs/licenses/ — original work CC0; properties derived from
  GeoNames, geonames.org, CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/);
  some Quattroshapes properties CC BY.
- **Boundaries**: geoBoundaries (https://www.geoboundaries.org), Runfola, D. et al. (2020)
  geoBoundaries: A global database of political administrative boundaries. PLoS ONE 15(4):
  e0231866. Derived from OpenStreetMap: © OpenStreetMap contributors, Open Database License
  1.0 (ODbL, https://opendatacommons.org/licenses/odbl/1-0/).
- **Schools, kindergartens, colleges, health facilities**: © OpenStreetMap contributors, ODbL 1.0,
  via the Humanitarian OpenStreetMap Team (HOT) Export Tool / raw-data-api, and via
  Healthsites.io (Global Healthsites Mapping Project), ODbL 1.0.
- **Administrative divisions (district centres)**: Open Admin Data, openadmindata.org/tj,
  CC BY 4.0 (https://github.com/open-admin-data/tajikistan-administrative-divisions).
- **District and region populations 2020**: Wikipedia contributors, CC BY-SA 4.0
  (https://creativecommons.org/licenses/by-sa/4.0/), citing TajStat, \"Population of the
  Republic of Tajikistan as of 1 January 2020\"; the article of each figure is listed in
  `district_population_2020.csv` of the source data (column `source_url`).

`sites.csv`, `villages.csv` and the `boundaries/` files are derived databases of
OpenStreetMap data and are themselves available under the ODbL 1.0.
";
