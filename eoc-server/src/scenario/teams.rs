//! `teams.csv`: REACT teams based at region and district centres.
//!
//! Four teams in Dushanbe (the capital, and the seat from which the
//! Districts of Republican Subordination are run), two at each other region
//! centre (Khujand, Bokhtar, Khorugh) and one in every district. A district
//! team is based, leaving out the region centres themselves, at the
//! district centre (GeoNames `PPLA2`); else at its largest settlement of
//! known population (towns are the ones with a known figure); else at the
//! settlement nearest the Open Admin Data point of the district; else at
//! its most populous settlement. Skills rotate through
//! [`SKILL_SETS`] within each region so every skill is held by several teams
//! in every region.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use eoc_protocol::scenario::{TeamRecord, VillageRecord};

use super::admin::{DUSHANBE, OUTSIDE};

/// First numeric device id handed to the OsmAnd/Traccar protocol; ids run
/// on from here in team-id order. Six digits keep them apart from the small
/// ids a Traccar server assigns by default.
pub(crate) const FIRST_TRACCAR_ID: u32 = 100_001;

/// Skill mixes handed out in turn. Over any six consecutive teams each
/// skill appears three times, so a region with three teams already has
/// every skill, and each team can work a site alone for a first day
/// (someone to search or assess, someone for people's needs).
pub(crate) const SKILL_SETS: &[&str] = &[
    "search_rescue;medical;assessment",
    "shelter;wash;logistics",
    "search_rescue;medical;logistics",
    "shelter;wash;assessment",
    "search_rescue;shelter;medical",
    "wash;assessment;logistics",
];

/// Region slug for team ids, its centre settlement (Latin name as in the
/// settlements file) and how many teams are based there.
const REGIONS: &[(&str, &str, &str, usize)] = &[
    (DUSHANBE, "dushanbe", "Dushanbe", 4),
    ("Sughd Region", "sughd", "Khujand", 2),
    ("Khatlon Region", "khatlon", "Qŭrghonteppa", 2),
    ("Gorno-Badakhshan Autonomous Region", "gbao", "Khorugh", 2),
    ("Districts of Republican Subordination", "drs", "", 0),
];

/// Display names of centres whose settlement name is an older spelling.
fn centre_display(name: &str) -> &str {
    match name {
        "Qŭrghonteppa" => "Bokhtar",
        other => other,
    }
}

/// Builds the teams from the villages already built. `seats` holds the ids
/// of district centres (`PPLA2`); `district_points` the Open Admin Data
/// point `(lat, lon)` of each district that has one inside its polygon.
pub(crate) fn build(
    villages: &[VillageRecord],
    seats: &BTreeSet<String>,
    district_points: &BTreeMap<String, (f64, f64)>,
) -> anyhow::Result<Vec<TeamRecord>> {
    // (region, slug, team base name, district, village) in the order numbered.
    let mut bases: Vec<(&str, &str, String, String, &VillageRecord)> = Vec::new();
    for &(region, slug, centre, count) in REGIONS {
        if count == 0 {
            continue;
        }
        let v = villages
            .iter()
            .filter(|v| v.region == region && v.name == centre)
            .max_by(|a, b| a.population.cmp(&b.population).then_with(|| b.id.cmp(&a.id)))
            .with_context(|| format!("no settlement {centre:?} in {region} for its region centre"))?;
        for n in 1..=count {
            bases.push((region, slug, format!("{} {n}", centre_display(centre)), v.district.clone(), v));
        }
    }
    let mut districts: BTreeMap<(&str, &str), Vec<&VillageRecord>> = BTreeMap::new();
    for v in villages {
        if v.region != OUTSIDE && v.region != DUSHANBE {
            districts.entry((v.region.as_str(), v.district.as_str())).or_default().push(v);
        }
    }
    let centres: BTreeSet<&str> = bases.iter().map(|b| b.4.id.as_str()).collect();
    for ((region, district), members) in &districts {
        let slug = REGIONS
            .iter()
            .find(|r| r.0 == *region)
            .map(|r| r.1)
            .with_context(|| format!("no team slug for region {region:?}"))?;
        let by_population = |a: &&&VillageRecord, b: &&&VillageRecord| {
            a.population.cmp(&b.population).then_with(|| b.id.cmp(&a.id))
        };
        let open: Vec<&VillageRecord> = members
            .iter()
            .copied()
            .filter(|v| !centres.contains(v.id.as_str()) && v.population > 0)
            .collect();
        let near_point = district_points.get(*district).and_then(|&(lat, lon)| {
            open.iter().min_by(|a, b| {
                let da = (a.lat - lat).powi(2) + ((a.lon - lon) * lat.to_radians().cos()).powi(2);
                let db = (b.lat - lat).powi(2) + ((b.lon - lon) * lat.to_radians().cos()).powi(2);
                da.total_cmp(&db).then_with(|| a.id.cmp(&b.id))
            })
        });
        let base = open
            .iter()
            .find(|v| seats.contains(&v.id))
            .or_else(|| open.iter().filter(|v| !v.population_estimated).max_by(by_population))
            .or(near_point)
            .or_else(|| open.iter().max_by(by_population))
            .or_else(|| members.iter().max_by(by_population))
            .with_context(|| format!("district {district} has no settlement"))?;
        let short = district.strip_suffix(" District").unwrap_or(district);
        bases.push((region, slug, short.to_owned(), (*district).to_owned(), base));
    }

    let mut per_region: BTreeMap<&str, usize> = BTreeMap::new();
    let mut teams: Vec<TeamRecord> = bases
        .iter()
        .map(|(_, slug, base_name, district, v)| {
            let n = per_region.entry(slug).or_default();
            *n += 1;
            let id = format!("react-{slug}-{n:02}");
            TeamRecord {
                name: format!("REACT {base_name}"),
                skills: SKILL_SETS[(*n - 1) % SKILL_SETS.len()].to_owned(),
                district: district.clone(),
                lat: v.lat,
                lon: v.lon,
                status: "available".to_owned(),
                devices: String::new(),
                id,
            }
        })
        .collect();
    teams.sort_by(|a, b| a.id.cmp(&b.id));
    for (i, t) in teams.iter_mut().enumerate() {
        let traccar = FIRST_TRACCAR_ID + u32::try_from(i).unwrap_or(u32::MAX - FIRST_TRACCAR_ID);
        t.devices = format!("owntracks:{}/phone;osmand:{traccar}", t.id);
    }
    Ok(teams)
}
