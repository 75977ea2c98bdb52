//! `sites.csv`: schools, kindergartens, colleges and health facilities from
//! the HOT / Healthsites.io OpenStreetMap exports, with a capacity for each.
//!
//! The method (also in `config/scenarios/tajikistan/README.md`):
//! 1. Education: `amenity` school / kindergarten / college / university
//!    (university counts as `college`); without an `amenity`, the same
//!    values of `building`. Health: `amenity` hospital / clinic / doctors,
//!    or without an `amenity` a `healthcare` of hospital, clinic, doctor,
//!    centre, birthing_centre, rehabilitation or hospice. Pharmacies,
//!    dentists, laboratories and the like are excluded: nobody can shelter
//!    there.
//! 2. One OSM object is one site: the HOT files are read first, and a
//!    Healthsites.io feature with an OSM id already seen is a duplicate.
//! 3. A polygon with a `building` tag (and a footprint up to
//!    [`MAX_BUILDING_FOOTPRINT_M2`]) is a building; any other polygon is the
//!    grounds. A building inside grounds of the same kind is merged into
//!    them, adding its floor area; a point inside a polygon of the same kind
//!    is merged into it too.
//! 4. Capacity is covered floor area ÷ [`FLOOR_M2_PER_PERSON`]: floor area is
//!    footprint × `building:levels` (1 when untagged) for a building, the sum
//!    over its buildings for grounds holding some, and
//!    [`GROUNDS_FLOOR_FRACTION`] of the grounds' area otherwise (capped at
//!    [`GROUNDS_CAPACITY_CAP`], [`HEALTH_GROUNDS_CAPACITY_CAP`] for health). A point gets its kind's default
//!    ([`default_capacity`]); an OSM `capacity:persons` wins over all.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use eoc_protocol::scenario::SiteRecord;
use eoc_protocol::types::SiteKind;
use geo::{BoundingRect, Contains, GeodesicArea, InteriorPoint, Intersects, MultiPolygon, Point, Rect};

use super::admin::{Admin, Feature, Geom, read_features};
use super::villages::round_to;

/// Covered floor area per displaced person, m² (PRODUCT.md §2: Sphere's
/// 3.5 m² minimum raised for Tajikistan's cold winters).
pub(crate) const FLOOR_M2_PER_PERSON: f64 = 4.5;

/// Largest footprint still believed to be one building, m². The largest
/// school or hospital building in the exports is about 6,000 m²; a
/// "building" much larger than that is a campus drawn with a building tag,
/// so it is treated as grounds.
pub(crate) const MAX_BUILDING_FOOTPRINT_M2: f64 = 15_000.0;

/// Share of school or hospital grounds taken as covered floor area when no
/// building is mapped inside. Rural Tajik schools are one- or two-storey
/// blocks covering roughly a tenth to a fifth of their plot; 0.15 sits in
/// the middle and errs low, since overestimated capacity is the failure
/// PRODUCT.md warns about.
pub(crate) const GROUNDS_FLOOR_FRACTION: f64 = 0.15;

/// Most persons a grounds-only estimate may give: a very large school
/// (about 6,750 m² of floor). Campus polygons of several hectares would
/// otherwise claim thousands of places nobody has checked.
pub(crate) const GROUNDS_CAPACITY_CAP: u32 = 1_500;

/// Most persons a grounds-only estimate may give for a health site: a
/// hospital compound keeps its wards for patients, so only halls and a spare
/// ward or two take displaced people, whatever the size of its grounds.
pub(crate) const HEALTH_GROUNDS_CAPACITY_CAP: u32 = 300;

/// Persons a site mapped only as a point can take, by kind. A typical rural
/// school has eight to twelve classrooms of about 50 m²; 150 persons
/// (675 m²) assumes only part of them are usable. A kindergarten has three
/// or four group rooms (40 persons, 180 m²). Colleges are larger than
/// schools (200). A rural health post or doctor's office has a few rooms
/// and keeps its own work going (30). Camps and other centres are not in
/// the source data; 100 is a placeholder for sites added by hand.
pub(crate) fn default_capacity(kind: SiteKind) -> u32 {
    match kind {
        SiteKind::School => 150,
        SiteKind::Kindergarten => 40,
        SiteKind::College => 200,
        SiteKind::Health => 30,
        SiteKind::Camp | SiteKind::BorderPoint | SiteKind::Other => 100,
    }
}

/// Services assumed at the start. Every school, kindergarten, college and
/// health facility in Tajikistan has water and toilets of some kind; health
/// sites also offer health care. Heating is not assumed: many rural schools
/// heat with stoves only in class hours, so site managers report it.
fn default_services(kind: SiteKind) -> &'static str {
    match kind {
        SiteKind::Health => "water;sanitation;health",
        _ => "water;sanitation",
    }
}

/// Decides a feature's kind, or why it is left out.
type Classify = fn(&Feature) -> Result<SiteKind, String>;

/// A source feature kept as a candidate site.
struct Candidate {
    id: String,
    kind: SiteKind,
    name: Option<String>,
    shape: Shape,
    levels: Option<f64>,
    capacity_persons: Option<u32>,
}

enum Shape {
    Point(Point<f64>),
    Area { poly: MultiPolygon<f64>, bbox: Rect<f64>, area_m2: f64, inside: Point<f64>, building: bool },
}

/// What the build kept, merged and left out, for the summary and README.
#[derive(Debug, Default)]
pub(crate) struct SiteSummary {
    /// Features read per source file.
    pub read: Vec<(String, usize)>,
    /// Features left out, by reason (`pharmacy`, `amenity=library`, ...).
    pub excluded: BTreeMap<String, usize>,
    /// Features whose OSM id was already read from another file.
    pub duplicate_ids: usize,
    /// Buildings merged into the grounds around them.
    pub merged_buildings: usize,
    /// Points merged into a polygon of the same kind.
    pub merged_points: usize,
    /// Sites outside every Tajik polygon, left out.
    pub outside: usize,
    /// Sites written, by kind.
    pub by_kind: BTreeMap<String, usize>,
    /// Sites written, by capacity source.
    pub by_capacity_source: BTreeMap<String, usize>,
    /// Total capacity written.
    pub capacity: u64,
}

/// Builds the sites from the source directory.
pub(crate) fn build(from: &Path, admin: &Admin) -> anyhow::Result<(Vec<SiteRecord>, SiteSummary)> {
    let dir = from.join("facilities");
    let mut summary = SiteSummary::default();
    let mut candidates: BTreeMap<String, Candidate> = BTreeMap::new();
    let sources: [(&str, Classify); 5] = [
        ("hotosm_tjk_education_facilities_points_geojson.geojson", education_kind),
        ("hotosm_tjk_education_facilities_polygons_geojson.geojson", education_kind),
        ("hotosm_tjk_health_facilities_points_geojson.geojson", health_kind),
        ("hotosm_tjk_health_facilities_polygons_geojson.geojson", health_kind),
        ("healthsites/tajikistan.geojson", health_kind),
    ];
    for (file, classify) in sources {
        let (features, skipped) = read_features(&dir.join(file))?;
        summary.read.push((file.to_owned(), features.len() + skipped));
        if skipped > 0 {
            *summary.excluded.entry("no point or polygon geometry".into()).or_default() += skipped;
        }
        for f in features {
            let kind = match classify(&f) {
                Ok(kind) => kind,
                Err(reason) => {
                    *summary.excluded.entry(reason).or_default() += 1;
                    continue;
                }
            };
            let id =
                osm_id(&f).with_context(|| format!("{file}: a feature has no usable osm_id/osm_type"))?;
            if candidates.contains_key(&id) {
                summary.duplicate_ids += 1;
                continue;
            }
            let Some(shape) = shape(&f.geom) else {
                *summary.excluded.entry("empty polygon".into()).or_default() += 1;
                continue;
            };
            let shape = match shape {
                Shape::Area { poly, bbox, area_m2, inside, .. } => {
                    let building =
                        f.text("building").is_some_and(|b| b != "no") && area_m2 <= MAX_BUILDING_FOOTPRINT_M2;
                    Shape::Area { poly, bbox, area_m2, inside, building }
                }
                point => point,
            };
            let name = ["name", "name:en", "name:tg"].iter().find_map(|k| f.text(k)).map(str::to_owned);
            let levels = f
                .text("building:levels")
                .and_then(|l| l.parse::<f64>().ok())
                .or_else(|| f.int("building:levels").map(|l| l as f64))
                .filter(|l| (1.0..=40.0).contains(l));
            let capacity_persons =
                f.int("capacity:persons").and_then(|c| u32::try_from(c).ok()).filter(|&c| c > 0);
            candidates.insert(id.clone(), Candidate { id, kind, name, shape, levels, capacity_persons });
        }
    }

    // Buildings inside grounds of the same kind join the smallest such grounds.
    let ids: Vec<String> = candidates.keys().cloned().collect();
    let mut floor_from_buildings: BTreeMap<String, f64> = BTreeMap::new();
    let mut merged_into: BTreeMap<String, String> = BTreeMap::new();
    for id in &ids {
        let Some(c) = candidates.get(id) else { continue };
        let Shape::Area { inside, building: true, area_m2, .. } = c.shape else { continue };
        let host = smallest_area_containing(&candidates, inside, c.kind, |building| !building);
        if let Some(host) = host {
            *floor_from_buildings.entry(host.clone()).or_default() += area_m2 * c.levels.unwrap_or(1.0);
            merged_into.insert(id.clone(), host);
        }
    }
    summary.merged_buildings = merged_into.len();
    // Points inside any polygon of the same kind join it (or its grounds).
    for id in &ids {
        let Some(c) = candidates.get(id) else { continue };
        let Shape::Point(p) = c.shape else { continue };
        if let Some(host) = smallest_area_containing(&candidates, p, c.kind, |_| true) {
            let host = merged_into.get(&host).cloned().unwrap_or(host);
            merged_into.insert(id.clone(), host);
            summary.merged_points += 1;
        }
    }
    // A merged feature lends its name to an unnamed host.
    for (from_id, host) in &merged_into {
        let name = candidates.get(from_id).and_then(|c| c.name.clone());
        if let Some(h) = candidates.get_mut(host)
            && h.name.is_none()
        {
            h.name = name;
        }
    }

    let mut records = Vec::new();
    for c in candidates.values() {
        if merged_into.contains_key(&c.id) {
            continue;
        }
        let at = match &c.shape {
            Shape::Point(p) => *p,
            Shape::Area { inside, .. } => *inside,
        };
        let Some((region, district)) = admin.locate(at) else {
            summary.outside += 1;
            continue;
        };
        let (capacity, source, floor_area) = capacity(c, floor_from_buildings.get(&c.id).copied());
        records.push(SiteRecord {
            id: c.id.clone(),
            name: c.name.clone().unwrap_or_else(|| format!("unnamed {}", c.kind)),
            kind: c.kind.to_string(),
            region,
            district,
            lat: round_to(at.y(), 1e6),
            lon: round_to(at.x(), 1e6),
            capacity,
            capacity_source: source.to_owned(),
            floor_area_m2: floor_area.map(|a| round_to(a, 10.0)),
            occupancy: 0,
            status: "open".to_owned(),
            services: default_services(c.kind).to_owned(),
        });
    }
    for r in &records {
        *summary.by_kind.entry(r.kind.clone()).or_default() += 1;
        *summary.by_capacity_source.entry(r.capacity_source.clone()).or_default() += 1;
        summary.capacity += u64::from(r.capacity);
    }
    Ok((records, summary))
}

/// Capacity, its source and the floor area behind it.
fn capacity(c: &Candidate, floor_from_buildings: Option<f64>) -> (u32, &'static str, Option<f64>) {
    let persons = |floor_m2: f64| ((floor_m2 / FLOOR_M2_PER_PERSON).floor() as u32).max(1);
    let (capacity, source, floor) = match (&c.shape, floor_from_buildings) {
        (Shape::Point(_), _) => (default_capacity(c.kind), "default", None),
        (Shape::Area { building: true, area_m2, .. }, extra) => {
            let floor = area_m2 * c.levels.unwrap_or(1.0) + extra.unwrap_or(0.0);
            (persons(floor), "floor_area", Some(floor))
        }
        (Shape::Area { building: false, .. }, Some(floor)) => (persons(floor), "floor_area", Some(floor)),
        (Shape::Area { building: false, area_m2, .. }, None) => {
            let floor = area_m2 * GROUNDS_FLOOR_FRACTION;
            let cap =
                if c.kind == SiteKind::Health { HEALTH_GROUNDS_CAPACITY_CAP } else { GROUNDS_CAPACITY_CAP };
            (persons(floor).min(cap), "grounds_estimate", Some(floor))
        }
    };
    match c.capacity_persons {
        Some(n) => (n, "osm", floor),
        None => (capacity, source, floor),
    }
}

/// The smallest polygon of `kind` (building or grounds as `accept` says)
/// that contains `p`; ties go to the lower id.
fn smallest_area_containing(
    candidates: &BTreeMap<String, Candidate>,
    p: Point<f64>,
    kind: SiteKind,
    accept: impl Fn(bool) -> bool,
) -> Option<String> {
    candidates
        .values()
        .filter(|c| c.kind == kind)
        .filter_map(|c| match &c.shape {
            Shape::Area { poly, bbox, area_m2, building, .. }
                if accept(*building) && bbox.intersects(&p) && poly.contains(&p) =>
            {
                Some((*area_m2, &c.id))
            }
            _ => None,
        })
        .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)))
        .map(|(_, id)| id.clone())
}

fn shape(geom: &Geom) -> Option<Shape> {
    match geom {
        Geom::Point(p) => Some(Shape::Point(*p)),
        Geom::Area(poly) => {
            let bbox = poly.bounding_rect()?;
            let inside = poly.interior_point()?;
            Some(Shape::Area {
                poly: poly.clone(),
                bbox,
                area_m2: poly.geodesic_area_unsigned(),
                inside,
                building: false,
            })
        }
    }
}

/// `osm:node:N`, `osm:way:N` or `osm:relation:N`. HOT exports spell the type
/// `nodes` / `ways_poly` / `relations`; Healthsites.io spells it `node` /
/// `way` and, as osm2pgsql does, gives a relation as a way with a negative id.
fn osm_id(f: &Feature) -> Option<String> {
    let n = f.int("osm_id")?;
    let kind = match f.text("osm_type")? {
        "node" | "nodes" => "node",
        "way" | "ways" | "ways_poly" | "ways_line" if n < 0 => "relation",
        "way" | "ways" | "ways_poly" | "ways_line" => "way",
        "relation" | "relations" => "relation",
        _ => return None,
    };
    Some(format!("osm:{kind}:{}", n.unsigned_abs()))
}

fn education_kind(f: &Feature) -> Result<SiteKind, String> {
    let from = |v: &str| match v {
        "school" => Some(SiteKind::School),
        "kindergarten" => Some(SiteKind::Kindergarten),
        "college" | "university" => Some(SiteKind::College),
        _ => None,
    };
    match f.text("amenity") {
        Some(a) => from(a).ok_or_else(|| format!("amenity={a}")),
        None => f.text("building").and_then(from).ok_or_else(|| "no education tag".to_owned()),
    }
}

fn health_kind(f: &Feature) -> Result<SiteKind, String> {
    match (f.text("amenity"), f.text("healthcare")) {
        (Some("hospital" | "clinic" | "doctors"), _) => Ok(SiteKind::Health),
        (Some("pharmacy"), _) | (None, Some("pharmacy")) => Err("pharmacy".into()),
        (Some("dentist"), _) | (None, Some("dentist")) => Err("dentist".into()),
        (Some(a), _) => Err(format!("amenity={a}")),
        (
            None,
            Some(
                "hospital" | "clinic" | "doctor" | "centre" | "birthing_centre" | "rehabilitation"
                | "hospice",
            ),
        ) => Ok(SiteKind::Health),
        (None, Some(h)) => Err(format!("healthcare={h}")),
        (None, None) => Err("no health tag".into()),
    }
}
