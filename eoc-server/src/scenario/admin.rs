//! GeoJSON features of the source data as `geo` geometries, and the
//! point-in-polygon lookup of region (ADM1) and district (ADM2) against the
//! full-resolution geoBoundaries polygons.

use std::path::Path;

use anyhow::Context;
use geo::{
    BoundingRect, Contains, Distance, Euclidean, InteriorPoint, Intersects, LineString, MultiPolygon, Point,
    Polygon, Rect,
};
use serde_json::{Map, Value};

/// Region name geoBoundaries gives the capital (ADM1 `shapeName`).
pub(crate) const DUSHANBE: &str = "Dushanbe";

/// Region and district of places outside every Tajik polygon (kept: a quake
/// near the border shakes them too).
pub(crate) const OUTSIDE: &str = "outside Tajikistan";

/// A GeoJSON feature reduced to what the build needs.
pub(crate) struct Feature {
    /// The feature's properties.
    pub props: Map<String, Value>,
    /// Its geometry.
    pub geom: Geom,
}

/// A point or an area. Lines and empty geometries are dropped at reading.
pub(crate) enum Geom {
    Point(Point<f64>),
    Area(MultiPolygon<f64>),
}

impl Feature {
    /// A property as text; `None` when absent, null or blank.
    pub fn text(&self, key: &str) -> Option<&str> {
        match self.props.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim()),
            _ => None,
        }
    }

    /// A property as a whole number (JSON number or numeric text).
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.props.get(key) {
            Some(Value::Number(n)) => {
                n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            }
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// Reads a GeoJSON FeatureCollection. Returns the features with a point or
/// (multi)polygon geometry and the number of features skipped for having
/// another or no geometry.
pub(crate) fn read_features(path: &Path) -> anyhow::Result<(Vec<Feature>, usize)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let features = doc
        .get("features")
        .and_then(Value::as_array)
        .with_context(|| format!("{} is not a geojson feature collection", path.display()))?;
    let mut out = Vec::with_capacity(features.len());
    let mut skipped = 0;
    for f in features {
        let props = f.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        match f.get("geometry").and_then(geometry) {
            Some(geom) => out.push(Feature { props, geom }),
            None => skipped += 1,
        }
    }
    Ok((out, skipped))
}

fn geometry(g: &Value) -> Option<Geom> {
    let coords = g.get("coordinates")?;
    match g.get("type")?.as_str()? {
        "Point" => position(coords).map(|(x, y)| Geom::Point(Point::new(x, y))),
        "Polygon" => polygon(coords).map(|p| Geom::Area(MultiPolygon(vec![p]))),
        "MultiPolygon" => {
            let polys: Option<Vec<Polygon<f64>>> = coords.as_array()?.iter().map(polygon).collect();
            polys.filter(|p| !p.is_empty()).map(|p| Geom::Area(MultiPolygon(p)))
        }
        _ => None,
    }
}

fn position(v: &Value) -> Option<(f64, f64)> {
    let a = v.as_array()?;
    let (x, y) = (a.first()?.as_f64()?, a.get(1)?.as_f64()?);
    (x.is_finite() && y.is_finite()).then_some((x, y))
}

fn ring(v: &Value) -> Option<LineString<f64>> {
    let pts: Option<Vec<(f64, f64)>> = v.as_array()?.iter().map(position).collect();
    pts.filter(|p| p.len() >= 4).map(LineString::from)
}

fn polygon(v: &Value) -> Option<Polygon<f64>> {
    let mut rings = v.as_array()?.iter().map(ring);
    let exterior = rings.next()??;
    let interiors: Option<Vec<_>> = rings.collect();
    Some(Polygon::new(exterior, interiors?))
}

/// One administrative unit.
struct Unit {
    name: String,
    shape: MultiPolygon<f64>,
    bbox: Rect<f64>,
}

impl Unit {
    fn contains(&self, p: Point<f64>) -> bool {
        self.bbox.intersects(&p) && self.shape.contains(&p)
    }
}

/// Regions and districts of Tajikistan for point-in-polygon lookups.
pub(crate) struct Admin {
    regions: Vec<Unit>,
    /// Districts with the index of the region holding their interior point.
    districts: Vec<(Unit, Option<usize>)>,
}

impl Admin {
    /// Loads `geoBoundaries-TJK-ADM1.geojson` and `-ADM2.geojson` from `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Admin> {
        let regions = units(&dir.join("geoBoundaries-TJK-ADM1.geojson"))?;
        let districts = units(&dir.join("geoBoundaries-TJK-ADM2.geojson"))?
            .into_iter()
            .map(|d| {
                let region =
                    d.shape.interior_point().and_then(|p| regions.iter().position(|r| r.contains(p)));
                (d, region)
            })
            .collect();
        Ok(Admin { regions, districts })
    }

    /// `(region, district)` of a point (x = lon, y = lat), or `None` outside
    /// every region and district. The capital has no ADM2 polygon of its
    /// own, so its district is [`DUSHANBE`] too. A point in a region but in a
    /// sliver between district polygons gets the nearest district of that
    /// region.
    pub fn locate(&self, p: Point<f64>) -> Option<(String, String)> {
        let region = self.regions.iter().position(|r| r.contains(p));
        if let Some(r) = region
            && self.regions[r].name == DUSHANBE
        {
            return Some((DUSHANBE.to_owned(), DUSHANBE.to_owned()));
        }
        let district = self.districts.iter().position(|(d, _)| d.contains(p));
        match (region, district) {
            (_, Some(d)) => {
                let (unit, own_region) = &self.districts[d];
                let r = region.or(*own_region)?;
                Some((self.regions[r].name.clone(), unit.name.clone()))
            }
            (Some(r), None) => {
                let nearest = self
                    .districts
                    .iter()
                    .filter(|(_, dr)| *dr == Some(r))
                    .map(|(d, _)| (Euclidean.distance(&p, &d.shape), d))
                    .min_by(|a, b| a.0.total_cmp(&b.0))?;
                Some((self.regions[r].name.clone(), nearest.1.name.clone()))
            }
            (None, None) => None,
        }
    }
}

fn units(path: &Path) -> anyhow::Result<Vec<Unit>> {
    let (features, _) = read_features(path)?;
    let mut out = Vec::new();
    for f in features {
        let name = f
            .text("shapeName")
            .with_context(|| format!("{}: a feature has no shapeName", path.display()))?
            .to_owned();
        let Geom::Area(shape) = f.geom else {
            anyhow::bail!("{}: {name} is not a polygon", path.display());
        };
        let bbox = shape.bounding_rect().with_context(|| format!("{}: {name} is empty", path.display()))?;
        out.push(Unit { name, shape, bbox });
    }
    Ok(out)
}
