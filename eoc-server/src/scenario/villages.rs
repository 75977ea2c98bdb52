//! `villages.csv`: the Who's On First / GeoNames settlements with a
//! population for each, known or estimated from the 2020 district totals.
//!
//! The method (also in `config/scenarios/tajikistan/README.md`):
//! 1. Region and district are the geoBoundaries point-in-polygon columns
//!    `gb_adm1` / `gb_adm2`. Points in the Dushanbe ADM1 polygon get the
//!    district "Dushanbe" (ADM2 has no polygon for the capital); the 13
//!    points outside the border get region and district [`OUTSIDE`].
//! 2. Destroyed (`PPLW`) and abandoned (`PPLQ`) places are kept, so an
//!    operator who sees the name on a map finds it, with population 0.
//! 3. Each district has a 2020 total: `polygon_pop_2020` of
//!    `district_name_map.csv`; Dushanbe's is its own table row and is taken
//!    out of the Rudaki polygon, which holds both. A district without a total
//!    gets a share of its region's gap (region 2020 total minus the districts
//!    that have one), split by the number of inhabited settlements in each.
//! 4. Inside a district, settlements with a known population keep it; the
//!    rest of the district total is spread over the others, a district
//!    centre (`PPLA2`) counting [`DISTRICT_CENTRE_WEIGHT`] times a village,
//!    and never below [`MIN_ESTIMATED_POPULATION`] per village.
//! 5. Points outside Tajikistan get the median estimated village size.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context;
use eoc_protocol::scenario::VillageRecord;
use serde::Deserialize;

use super::admin::{DUSHANBE, OUTSIDE};

/// A district centre (GeoNames `PPLA2`) is a small town: it counts this many
/// villages when a district's unassigned population is spread. The 14
/// `PPLA2` places are district seats of a few thousand people where an
/// average village has several hundred to a couple of thousand.
pub(crate) const DISTRICT_CENTRE_WEIGHT: u64 = 4;

/// Floor of an estimated village population. Applied only where a district's
/// known populations (often older census figures) already exceed its 2020
/// total, so the others would otherwise get nothing.
pub(crate) const MIN_ESTIMATED_POPULATION: u64 = 50;

/// 2020 (1 January) totals of the regions, from the region articles (see
/// `SOURCES.md` §4), keyed by geoBoundaries ADM1 name and with the region
/// name used by `district_name_map.csv`. GBAO has no 2020 figure: its 2019
/// total, 226,900, is used, and only Khorugh is missing there.
const REGION_TOTALS: &[(&str, &str, u64)] = &[
    ("Sughd Region", "Sughd", 2_707_300),
    ("Khatlon Region", "Khatlon", 3_348_300),
    ("Districts of Republican Subordination", "Districts of Republican Subordination", 2_165_900),
    ("Gorno-Badakhshan Autonomous Region", "Gorno-Badakhshan", 226_900),
];

/// A row of `settlements_wof_geonames.csv` (the columns the build uses).
#[derive(Debug, Deserialize)]
struct SettlementRow {
    wof_id: String,
    name: String,
    #[serde(default)]
    name_rus: String,
    lat: f64,
    lon: f64,
    population: Option<u64>,
    #[serde(default)]
    geonames_feature_code: String,
    elevation_dem_m: Option<i32>,
    inside_tjk: String,
    gb_adm1: String,
    gb_adm2: String,
}

/// A row of `district_name_map.csv`.
#[derive(Debug, Deserialize)]
struct NameMapRow {
    #[serde(rename = "shapeName")]
    shape_name: String,
    table_region: String,
    #[serde(default)]
    also_contains: String,
    polygon_pop_2020: Option<u64>,
}

/// A row of `district_population_2020.csv`.
#[derive(Debug, Deserialize)]
struct TableRow {
    region: String,
    name: String,
    kind: String,
    population_2020: Option<u64>,
}

/// How a district's 2020 total was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TotalSource {
    /// `polygon_pop_2020` of the name map.
    Table,
    /// The capital's own row, taken out of the Rudaki polygon.
    CapitalSplit,
    /// A share of the region's gap.
    RegionGap,
}

impl TotalSource {
    fn as_str(self) -> &'static str {
        match self {
            TotalSource::Table => "district_table",
            TotalSource::CapitalSplit => "capital_split",
            TotalSource::RegionGap => "region_gap",
        }
    }
}

/// One district's population accounting, written to `population_totals.csv`.
#[derive(Debug, Clone)]
pub(crate) struct DistrictTotal {
    pub region: String,
    pub district: String,
    pub total_2020: u64,
    pub source: TotalSource,
    pub settlements: usize,
    pub known: u64,
    pub estimated: u64,
}

/// The villages and the accounting behind their populations.
pub(crate) struct Villages {
    /// Rows sorted by id.
    pub records: Vec<VillageRecord>,
    /// Districts sorted by region and name.
    pub totals: Vec<DistrictTotal>,
    /// Destroyed or abandoned places (population 0).
    pub ruins: usize,
    /// Places outside Tajikistan.
    pub outside: usize,
    /// Ids of district centres (GeoNames `PPLA2`).
    pub seats: BTreeSet<String>,
}

/// Builds the villages from the source directory.
pub(crate) fn build(from: &Path) -> anyhow::Result<Villages> {
    let rows: Vec<SettlementRow> = read_csv(&from.join("settlements_wof_geonames.csv"))?;
    let map: Vec<NameMapRow> = read_csv(&from.join("admin-divisions/district_name_map.csv"))?;
    let table: Vec<TableRow> = read_csv(&from.join("admin-divisions/district_population_2020.csv"))?;

    let capital_total = table
        .iter()
        .find(|t| t.region == DUSHANBE && t.name == DUSHANBE && t.kind == "city")
        .and_then(|t| t.population_2020)
        .context("district_population_2020.csv has no 2020 population for the city of Dushanbe")?;

    // Settlement → (region, district, inhabited).
    struct Place<'a> {
        row: &'a SettlementRow,
        region: String,
        district: String,
        ruin: bool,
    }
    let mut places: Vec<Place> = rows
        .iter()
        .map(|row| {
            let (region, district) =
                if row.inside_tjk != "yes" || row.gb_adm1.is_empty() || row.gb_adm2.is_empty() {
                    (OUTSIDE.to_owned(), OUTSIDE.to_owned())
                } else if row.gb_adm1 == DUSHANBE {
                    (DUSHANBE.to_owned(), DUSHANBE.to_owned())
                } else {
                    (row.gb_adm1.clone(), row.gb_adm2.clone())
                };
            let ruin = matches!(row.geonames_feature_code.as_str(), "PPLW" | "PPLQ");
            Place { row, region, district, ruin }
        })
        .collect();
    places.sort_by(|a, b| a.row.wof_id.cmp(&b.row.wof_id));

    // Inhabited settlements per district, for the region-gap split.
    let mut inhabited: BTreeMap<&str, u64> = BTreeMap::new();
    for p in places.iter().filter(|p| !p.ruin) {
        *inhabited.entry(p.district.as_str()).or_default() += 1;
    }

    // District totals.
    let mut totals: BTreeMap<String, (String, u64, TotalSource)> = BTreeMap::new();
    totals.insert(DUSHANBE.to_owned(), (DUSHANBE.to_owned(), capital_total, TotalSource::CapitalSplit));
    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut filled: BTreeMap<&str, u64> = BTreeMap::new();
    for m in &map {
        let region = REGION_TOTALS
            .iter()
            .find(|(_, table_name, _)| *table_name == m.table_region)
            .map(|(gb, _, _)| *gb)
            .with_context(|| format!("district_name_map.csv: unknown region {:?}", m.table_region))?;
        let holds_capital = m.also_contains.split(';').any(|c| c.trim() == DUSHANBE);
        match m.polygon_pop_2020 {
            Some(pop) => {
                let (own, source) = if holds_capital {
                    let own = pop.checked_sub(capital_total).with_context(|| {
                        format!("{}: 2020 total {pop} is below the capital's {capital_total}", m.shape_name)
                    })?;
                    (own, TotalSource::CapitalSplit)
                } else {
                    (pop, TotalSource::Table)
                };
                *filled.entry(region).or_default() += own;
                totals.insert(m.shape_name.clone(), (region.to_owned(), own, source));
            }
            None => missing.entry(region).or_default().push(m.shape_name.as_str()),
        }
    }
    for (region, districts) in &missing {
        let region_total = REGION_TOTALS.iter().find(|(gb, _, _)| gb == region).map_or(0, |r| r.2);
        let gap = region_total.saturating_sub(filled.get(region).copied().unwrap_or(0));
        let weights: Vec<u64> =
            districts.iter().map(|d| inhabited.get(d).copied().unwrap_or(0).max(1)).collect();
        for (d, share) in districts.iter().zip(apportion(gap, &weights)) {
            totals.insert((*d).to_owned(), ((*region).to_owned(), share, TotalSource::RegionGap));
        }
    }

    // Spread each district's unassigned population.
    let mut population: Vec<(u64, bool)> = vec![(0, false); places.len()];
    let mut accounting = Vec::new();
    for (district, (region, total, source)) in &totals {
        let members: Vec<usize> =
            (0..places.len()).filter(|&i| places[i].district == *district && !places[i].ruin).collect();
        let known: u64 = members.iter().filter_map(|&i| places[i].row.population).sum();
        let unknown: Vec<usize> =
            members.iter().copied().filter(|&i| places[i].row.population.is_none()).collect();
        let weights: Vec<u64> = unknown
            .iter()
            .map(|&i| if places[i].row.geonames_feature_code == "PPLA2" { DISTRICT_CENTRE_WEIGHT } else { 1 })
            .collect();
        let floor = MIN_ESTIMATED_POPULATION * weights.iter().sum::<u64>();
        let shares = apportion(total.saturating_sub(known).max(floor), &weights);
        for (&i, share) in unknown.iter().zip(&shares) {
            population[i] = (*share, true);
        }
        for &i in &members {
            if let Some(known) = places[i].row.population {
                population[i] = (known, false);
            }
        }
        accounting.push(DistrictTotal {
            region: region.clone(),
            district: district.clone(),
            total_2020: *total,
            source: *source,
            settlements: members.len(),
            known,
            estimated: shares.iter().sum(),
        });
    }
    accounting.sort_by(|a, b| (&a.region, &a.district).cmp(&(&b.region, &b.district)));

    // Inhabited places in a district without a total (none in the 2017
    // polygons, but a new boundary file could have one) and places outside
    // the border get the median estimated village.
    let mut village_estimates: Vec<u64> = (0..places.len())
        .filter(|&i| population[i].1 && places[i].row.geonames_feature_code != "PPLA2")
        .map(|i| population[i].0)
        .collect();
    village_estimates.sort_unstable();
    let median =
        village_estimates.get(village_estimates.len() / 2).copied().unwrap_or(MIN_ESTIMATED_POPULATION);
    let median = (median + 5) / 10 * 10;
    let mut outside = 0;
    for (i, p) in places.iter().enumerate() {
        if p.district == OUTSIDE {
            outside += 1;
        }
        if !p.ruin && !totals.contains_key(&p.district) {
            population[i] = match p.row.population {
                Some(known) => (known, false),
                None => (median, true),
            };
        }
    }

    let records = places
        .iter()
        .zip(&population)
        .map(|(p, &(pop, estimated))| VillageRecord {
            id: format!("wof:{}", p.row.wof_id),
            name: if p.row.name.is_empty() { p.row.name_rus.clone() } else { p.row.name.clone() },
            region: p.region.clone(),
            district: p.district.clone(),
            lat: round_to(p.row.lat, 1e6),
            lon: round_to(p.row.lon, 1e6),
            population: u32::try_from(pop).unwrap_or(u32::MAX),
            population_estimated: estimated,
            elevation_m: p.row.elevation_dem_m,
        })
        .collect();
    let ruins = places.iter().filter(|p| p.ruin).count();
    let seats = places
        .iter()
        .filter(|p| p.row.geonames_feature_code == "PPLA2")
        .map(|p| format!("wof:{}", p.row.wof_id))
        .collect();
    Ok(Villages { records, totals: accounting, ruins, outside, seats })
}

/// Writes `population_totals.csv`: one row per district with its 2020 total,
/// where the total came from, and how it was split.
pub(crate) fn write_totals(path: &Path, totals: &[DistrictTotal]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    w.write_record([
        "region",
        "district",
        "total_2020",
        "total_source",
        "settlements",
        "known",
        "estimated",
    ])?;
    for t in totals {
        w.write_record([
            t.region.as_str(),
            t.district.as_str(),
            &t.total_2020.to_string(),
            t.source.as_str(),
            &t.settlements.to_string(),
            &t.known.to_string(),
            &t.estimated.to_string(),
        ])?;
    }
    w.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Splits `total` over `weights` in whole people (largest remainder; ties go
/// to the earlier entry), so the parts add up to `total` exactly.
pub(crate) fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u64 = weights.iter().sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let (total, sum) = (u128::from(total), u128::from(sum));
    let mut parts: Vec<u64> = weights.iter().map(|&w| (total * u128::from(w) / sum) as u64).collect();
    let given: u128 = parts.iter().map(|&p| u128::from(p)).sum();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(total * u128::from(weights[i]) % sum), i));
    for &i in order.iter().take((total - given) as usize) {
        parts[i] += 1;
    }
    parts
}

/// Rounds to a fixed grid (`scale` = 1e6 keeps six decimals) so the output
/// never depends on the last bits of a parsed float.
pub(crate) fn round_to(x: f64, scale: f64) -> f64 {
    (x * scale).round() / scale
}

/// Reads a whole source CSV into rows; any bad row is an error, since the
/// source data is fixed and a silent skip would change the scenario.
pub(crate) fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (i, row) in reader.deserialize().enumerate() {
        out.push(row.with_context(|| format!("{}: row {}", path.display(), i + 2))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_adds_up_and_follows_weights() {
        assert_eq!(apportion(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(apportion(100, &[1, 4]), vec![20, 80]);
        assert_eq!(apportion(7, &[0, 0]), vec![0, 0]);
        let parts = apportion(1_234_567, &[3, 1, 4, 1, 5, 9, 2, 6]);
        assert_eq!(parts.iter().sum::<u64>(), 1_234_567);
    }
}
