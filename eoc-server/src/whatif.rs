//! `eoc-server whatif`: the impact of a hypothetical hazard on a scenario —
//! affected villages by district, people per intensity band, allocation to
//! sites, shortfall and dispatch — as readable tables or JSON.
//!
//! It runs the same engine as the server, on a fresh copy of the scenario,
//! so what a planner sees here is what the EOC would see live.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::Utc;
use eoc_protocol::delta::{ImpactView, TaskView};
use eoc_protocol::geometry::{AreaGeometry, EarthquakeSource, Position};
use eoc_protocol::messages::{AlertMsg, Envelope};
use eoc_protocol::types::{AlertStatus, Hazard, MsgType};
use eoc_protocol::validate::{Problems, Validate};

use crate::core::engine::{self, Command, Engine, EngineConfig};

/// Largest area file read, bytes.
const MAX_AREA_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Arguments of `eoc-server whatif`.
#[derive(Debug, clap::Args)]
pub struct WhatifArgs {
    /// The scenario directory.
    #[arg(long, default_value = "config/scenarios/tajikistan")]
    pub scenario: PathBuf,
    /// An earthquake: LAT,LON,DEPTH_KM,MAG (leave DEPTH_KM empty, as in
    /// `38.9,70.5,,7.2`, for the fixed-depth form of the equation).
    #[arg(long, conflicts_with_all = ["hazard", "area"], allow_hyphen_values = true)]
    pub earthquake: Option<String>,
    /// An area hazard: flood, mudslide or avalanche (with --area).
    #[arg(long, requires = "area")]
    pub hazard: Option<String>,
    /// GeoJSON file with the hazard area: a Polygon or MultiPolygon, or a
    /// Feature or FeatureCollection of them.
    #[arg(long, requires = "hazard")]
    pub area: Option<PathBuf>,
    /// Margin around the area, metres.
    #[arg(long)]
    pub buffer_m: Option<f64>,
    /// CAP severity of an area hazard (sets the displacement rate).
    #[arg(long, default_value = "severe")]
    pub severity: String,
    /// Intensity at or above which a village is affected.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// How many villages, allocations and tasks to list in the tables.
    #[arg(long, default_value_t = 25)]
    pub top: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// What a what-if run found.
#[derive(Debug, Clone)]
pub struct WhatIf {
    /// The alert as the engine holds it.
    pub alert: eoc_protocol::delta::AlertView,
    /// Impact, allocation, shortfall and the exposure table.
    pub impact: ImpactView,
    /// Teams proposed for the most urgent villages.
    pub tasks: Vec<TaskView>,
    /// Time the engine took, microseconds.
    pub elapsed_us: u128,
    /// Names of the villages and sites named in the result, by id.
    pub names: std::collections::HashMap<String, String>,
}

/// Parses `LAT,LON,DEPTH_KM,MAG`.
pub fn parse_earthquake(text: &str) -> anyhow::Result<EarthquakeSource> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [lat, lon, depth, mag] = parts.as_slice() else {
        bail!("--earthquake takes LAT,LON,DEPTH_KM,MAG (4 values), got {} in {text:?}", parts.len());
    };
    let num = |name: &str, s: &str| -> anyhow::Result<f64> {
        s.parse::<f64>().with_context(|| format!("--earthquake {name}: {s:?} is not a number"))
    };
    Ok(EarthquakeSource {
        lat: num("LAT", lat)?,
        lon: num("LON", lon)?,
        depth_km: if depth.is_empty() { None } else { Some(num("DEPTH_KM", depth)?) },
        magnitude: num("MAG", mag)?,
    })
}

/// Reads polygons from a GeoJSON file (geometry, Feature or FeatureCollection).
pub fn read_area(path: &Path) -> anyhow::Result<AreaGeometry> {
    let len = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
    if len > MAX_AREA_FILE_BYTES {
        bail!("{} is {len} bytes, the limit is {MAX_AREA_FILE_BYTES}", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let mut polygons: Vec<Vec<Vec<Position>>> = Vec::new();
    collect_polygons(&value, "", &mut polygons)?;
    match polygons.len() {
        0 => bail!("{} holds no Polygon or MultiPolygon", path.display()),
        1 => Ok(AreaGeometry::Polygon { coordinates: polygons.remove(0) }),
        _ => Ok(AreaGeometry::MultiPolygon { coordinates: polygons }),
    }
}

fn collect_polygons(
    v: &serde_json::Value,
    path: &str,
    out: &mut Vec<Vec<Vec<Position>>>,
) -> anyhow::Result<()> {
    let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or_default();
    match kind {
        "FeatureCollection" => {
            let features =
                v.get("features").and_then(|f| f.as_array()).map(Vec::as_slice).unwrap_or_default();
            for (i, f) in features.iter().enumerate() {
                collect_polygons(f, &format!("{path}features[{i}]."), out)?;
            }
        }
        "Feature" => {
            if let Some(g) = v.get("geometry") {
                collect_polygons(g, &format!("{path}geometry."), out)?;
            }
        }
        "Polygon" => out.push(
            serde_json::from_value(v.get("coordinates").cloned().unwrap_or_default())
                .with_context(|| format!("{path}coordinates is not a Polygon's rings of [lon, lat]"))?,
        ),
        "MultiPolygon" => out.extend(
            serde_json::from_value::<Vec<Vec<Vec<Position>>>>(
                v.get("coordinates").cloned().unwrap_or_default(),
            )
            .with_context(|| format!("{path}coordinates is not a MultiPolygon"))?,
        ),
        _ => {}
    }
    Ok(())
}

/// Builds the alert message for the arguments.
pub fn alert_for(args: &WhatifArgs) -> anyhow::Result<AlertMsg> {
    let (hazard, earthquake, area) = match (&args.earthquake, &args.hazard, &args.area) {
        (Some(eq), None, None) => (Hazard::Earthquake, Some(parse_earthquake(eq)?), None),
        (None, Some(h), Some(file)) => {
            let hazard: Hazard = h.parse().map_err(|e| anyhow::anyhow!("--hazard: {e}"))?;
            if !matches!(hazard, Hazard::Flood | Hazard::Mudslide | Hazard::Avalanche) {
                bail!("--hazard must be flood, mudslide or avalanche (an earthquake takes --earthquake)");
            }
            (hazard, None, Some(read_area(file)?))
        }
        _ => bail!("give --earthquake LAT,LON,DEPTH_KM,MAG, or --hazard KIND with --area FILE"),
    };
    let (urgency, severity, certainty) = engine::default_cap();
    let severity = if hazard == Hazard::Earthquake {
        severity
    } else {
        args.severity.parse().map_err(|e| anyhow::anyhow!("--severity: {e}"))?
    };
    Ok(AlertMsg {
        envelope: Envelope { v: eoc_protocol::PROTOCOL_VERSION, id: "whatif".to_owned(), ts: Utc::now() },
        alert_id: "whatif".to_owned(),
        msg_type: MsgType::Alert,
        status: AlertStatus::Actual,
        hazard: Some(hazard),
        urgency,
        severity,
        certainty,
        headline: Some("what-if".to_owned()),
        description: None,
        expires_at: None,
        earthquake,
        area,
        buffer_m: args.buffer_m,
        cap_xml: None,
    })
}

/// Runs the engine on `engine` for `msg` (a fresh engine over the scenario).
pub fn evaluate(mut engine: Engine, msg: AlertMsg) -> Result<WhatIf, Problems> {
    let now = Utc::now();
    let mut problems = Problems::default();
    msg.validate(now, &mut problems);
    problems.into_result()?;
    let started = Instant::now();
    engine.apply(&Command::Alert(msg), "whatif", now.timestamp_millis())?;
    let elapsed_us = started.elapsed().as_micros();
    let impact = engine.impact_view(0);
    let world = engine.world();
    let mut names = std::collections::HashMap::new();
    for a in &impact.allocations {
        for (id, name) in [
            (&a.village_id, world.village_idx(&a.village_id).map(|v| &world.village(v).name)),
            (&a.site_id, world.site_idx(&a.site_id).map(|s| &world.site(s).name)),
        ] {
            if let Some(name) = name {
                names.insert(id.clone(), name.clone());
            }
        }
    }
    for v in &impact.villages {
        names.insert(v.village_id.clone(), v.name.clone());
    }
    Ok(WhatIf {
        names,
        alert: engine.alert_view(0),
        impact,
        tasks: engine
            .tasks()
            .iter()
            .filter_map(|t| engine.task_idx(&t.id))
            .map(|k| engine.task_view(k))
            .collect(),
        elapsed_us,
    })
}

/// Runs the command.
pub fn run(args: &WhatifArgs) -> anyhow::Result<()> {
    let (world, report) = crate::scenario::load(&args.scenario)?;
    if !report.rejected.is_empty() {
        eprintln!("note: {} scenario rows rejected (see `eoc-server scenario check`)", report.rejected.len());
    }
    let mut config = EngineConfig::default();
    if let Some(t) = args.threshold {
        config.impact.threshold_intensity = t;
    }
    let msg = alert_for(args)?;
    let result =
        evaluate(Engine::new(world, config), msg).map_err(|p| anyhow::anyhow!("invalid hazard: {p}"))?;
    if args.json {
        let out = serde_json::json!({
            "alert": result.alert,
            "impact": result.impact,
            "tasks": result.tasks,
            "elapsed_us": result.elapsed_us,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render(&result, args.top));
    }
    Ok(())
}

/// Readable tables.
pub fn render(w: &WhatIf, top: usize) -> String {
    let mut s = String::new();
    let imp = &w.impact;
    let t = &imp.summary.total;
    let what = match (&w.alert.earthquake, &w.alert.area) {
        (Some(eq), _) => format!(
            "M{:.1} earthquake at {:.3}°N {:.3}°E, depth {}",
            eq.magnitude,
            eq.lat,
            eq.lon,
            eq.depth_km.map_or("15 km (fixed-depth form)".to_owned(), |d| format!("{d} km"))
        ),
        (None, Some(_)) => format!("{} ({} severity)", w.alert.hazard, w.alert.severity),
        _ => w.alert.hazard.to_string(),
    };
    let _ = writeln!(s, "What if: {what}");
    let _ = writeln!(
        s,
        "{} villages affected, {} people, {} displaced, {} placed at sites, {} without a place ({} µs)\n",
        t.villages,
        group(t.people),
        group(t.displaced),
        group(t.placed),
        group(t.shortfall),
        w.elapsed_us
    );

    // Exposure by district (PAGER-style).
    let _ = writeln!(s, "People exposed by district (intensity bands MSK-64):");
    let mut header = format!("{:<28} {:<24} {:>8}", "region", "district", "villages");
    for b in &imp.summary.bands {
        let _ = write!(header, " {b:>9}");
    }
    let _ = write!(header, " {:>10} {:>9} {:>9}", "displaced", "placed", "shortfall");
    let _ = writeln!(s, "{header}");
    for r in imp.summary.districts.iter().chain(std::iter::once(t)) {
        let (region, district) = if r.region.is_empty() && r.district.is_empty() {
            ("total", "")
        } else {
            (r.region.as_str(), r.district.as_str())
        };
        let mut line = format!("{:<28} {:<24} {:>8}", clip(region, 28), clip(district, 24), r.villages);
        for p in &r.people_by_band {
            let _ = write!(line, " {:>9}", group(*p));
        }
        let _ = write!(line, " {:>10} {:>9} {:>9}", group(r.displaced), group(r.placed), group(r.shortfall));
        let _ = writeln!(s, "{line}");
    }

    let _ = writeln!(s, "\nMost exposed villages (of {}):", imp.villages.len());
    let _ = writeln!(
        s,
        "{:>4} {:<26} {:<22} {:>8} {:>16} {:>11} {:>9}",
        "#", "village", "district", "km", "intensity ±1σ", "population", "displaced"
    );
    for v in imp.villages.iter().take(top) {
        let intensity = match (v.intensity, v.intensity_low, v.intensity_high) {
            (Some(i), Some(lo), Some(hi)) => format!("{i:.1} ({lo:.1}–{hi:.1})"),
            _ => "in area".to_owned(),
        };
        let km = v.distance_m.map_or("-".to_owned(), |d| format!("{:.1}", d / 1000.0));
        let pop =
            format!("{}{}", group(u64::from(v.population)), if v.population_estimated { "*" } else { "" });
        let _ = writeln!(
            s,
            "{:>4} {:<26} {:<22} {:>8} {:>16} {:>11} {:>9}",
            v.priority,
            clip(&v.name, 26),
            clip(&v.district, 22),
            km,
            intensity,
            pop,
            group(u64::from(v.displaced))
        );
    }
    let _ = writeln!(s, "(* population estimated from district totals)");

    let _ = writeln!(s, "\nAllocation (first {top} of {}):", imp.allocations.len());
    let name = |id: &str| w.names.get(id).map_or(id, String::as_str).to_owned();
    let _ = writeln!(s, "{:<24} {:<40} {:>8} {:>8}", "village", "site", "persons", "km");
    for a in imp.allocations.iter().take(top) {
        let _ = writeln!(
            s,
            "{:<24} {:<40} {:>8} {:>8.1}",
            clip(&name(&a.village_id), 24),
            clip(&format!("{} ({})", name(&a.site_id), a.site_id), 40),
            a.persons,
            a.distance_m / 1000.0
        );
    }
    if imp.shortfall.is_empty() {
        let _ = writeln!(s, "\nShortfall: none — every displaced person has a place.");
    } else {
        let _ = writeln!(
            s,
            "\nShortfall: {} people in {} villages have no place.",
            group(t.shortfall),
            imp.shortfall.len()
        );
        for sh in imp.shortfall.iter().take(top) {
            let _ = writeln!(s, "  {:<24} {:>8}", clip(&name(&sh.village_id), 24), sh.persons);
        }
    }

    let _ = writeln!(s, "\nDispatch ({} teams):", w.tasks.len());
    let _ = writeln!(
        s,
        "{:<8} {:<22} {:<24} {:<14} {:>8} {:<10}",
        "task", "team", "village", "skill", "km", "state"
    );
    for task in w.tasks.iter().take(top) {
        let _ = writeln!(
            s,
            "{:<8} {:<22} {:<24} {:<14} {:>8.1} {:<10}",
            task.task_id,
            clip(&task.team_id, 22),
            clip(&task.village_id.as_deref().map_or("-".to_owned(), name), 24),
            task.skill.map_or("-".to_owned(), |k| k.to_string()),
            task.distance_m / 1000.0,
            task.state
        );
    }
    s
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

/// 1234567 → "1,234,567".
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earthquake_argument_parses_with_and_without_depth() {
        let eq = parse_earthquake("38.9,70.5,10,7.2").unwrap();
        assert_eq!((eq.lat, eq.lon, eq.depth_km, eq.magnitude), (38.9, 70.5, Some(10.0), 7.2));
        assert_eq!(parse_earthquake("38.9, 70.5, , 7.2").unwrap().depth_km, None);
        let err = parse_earthquake("38.9,70.5,7.2").unwrap_err().to_string();
        assert!(err.contains("4 values"), "{err}");
        let err = parse_earthquake("38.9,east,10,7.2").unwrap_err().to_string();
        assert!(err.contains("LON"), "{err}");
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(group(999), "999");
    }

    #[test]
    fn area_files_take_features_and_collections() {
        let dir = tempfile::tempdir().unwrap();
        let ring = "[[69.0,38.0],[69.1,38.0],[69.1,38.1],[69.0,38.0]]";
        let fc = format!(
            r#"{{"type":"FeatureCollection","features":[
                {{"type":"Feature","properties":{{}},"geometry":{{"type":"Polygon","coordinates":[{ring}]}}}},
                {{"type":"Feature","properties":{{}},"geometry":{{"type":"Polygon","coordinates":[{ring}]}}}}]}}"#
        );
        let path = dir.path().join("fc.geojson");
        std::fs::write(&path, fc).unwrap();
        assert!(
            matches!(read_area(&path).unwrap(), AreaGeometry::MultiPolygon { coordinates } if coordinates.len() == 2)
        );
        let path = dir.path().join("empty.geojson");
        std::fs::write(&path, r#"{"type":"FeatureCollection","features":[]}"#).unwrap();
        assert!(read_area(&path).unwrap_err().to_string().contains("no Polygon"));
    }
}
