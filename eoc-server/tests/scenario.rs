//! Scenario directories: the checked-in Tajikistan scenario loads cleanly and
//! adds up, bad rows are reported precisely while good rows still load, and
//! the build reproduces the checked-in files byte for byte.

// Helpers outside `#[test]` functions unwrap too: in a test binary a panic
// is a failed test, which is what clippy.toml allows for tests.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use eoc_protocol::types::{SiteStatus, Skill};
use eoc_server::scenario::{self, RejectedRow};
use proptest::prelude::*;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tajikistan() -> PathBuf {
    workspace_root().join("config/scenarios/tajikistan")
}

/// The source data: `EOC_TAJIKISTAN_DATA`, else `../shared/data/tajikistan`
/// beside the workspace (present on developer machines and in CI).
fn source_data() -> Option<PathBuf> {
    let dir = std::env::var_os("EOC_TAJIKISTAN_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data/tajikistan"));
    if dir.is_dir() {
        return Some(dir);
    }
    // CI always has the data beside the clone: missing there is a failure,
    // not a reason to skip.
    assert!(std::env::var_os("CI").is_none(), "source data {} is missing in CI", dir.display());
    eprintln!("skipping: source data {} not found (set EOC_TAJIKISTAN_DATA)", dir.display());
    None
}

#[test]
fn tajikistan_scenario_loads_without_rejections() {
    let (world, report) = scenario::load(&tajikistan()).unwrap();
    assert!(report.rejected.is_empty(), "{report}");
    assert_eq!(world.villages().len(), 2669);
    assert_eq!(world.sites().len(), 1687);
    assert_eq!(world.teams().len(), 68);
    assert_eq!(report.accepted_in("villages.csv"), 2669);

    for v in world.villages() {
        assert!(!world.places.district(v.district).is_empty(), "{} has no district", v.id);
        assert!(!world.places.region(v.district).is_empty(), "{} has no region", v.id);
    }
    for s in world.sites() {
        assert!(s.capacity > 0 || s.status == SiteStatus::Closed, "{} is open with capacity 0", s.id);
    }
    // The capital is there with its known population, not an estimate.
    let dushanbe = world.villages().iter().find(|v| v.name == "Dushanbe" && v.population > 100_000).unwrap();
    assert!(!dushanbe.population_estimated);
    assert_eq!(world.places.district(dushanbe.district), "Dushanbe");
    // Teams can be found by their phones.
    let t = world.team_of_device("owntracks:react-sughd-01/phone").unwrap();
    assert_eq!(world.team(t).id, "react-sughd-01");
}

#[test]
fn tajikistan_population_matches_the_2020_totals_it_used() {
    let (world, _) = scenario::load(&tajikistan()).unwrap();
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut reader = csv::Reader::from_path(tajikistan().join("population_totals.csv")).unwrap();
    for row in reader.records() {
        let row = row.unwrap();
        totals.insert(row[1].to_owned(), row[2].parse().unwrap());
    }
    assert_eq!(totals.len(), 59, "58 district polygons and Dushanbe");
    let expected: u64 = totals.values().sum();
    // Tajikistan had about 9.3 million people on 1 January 2020.
    assert!((9_000_000..9_700_000).contains(&expected), "{expected}");
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    for v in world.villages() {
        *got.entry(world.places.district(v.district).to_owned()).or_default() += u64::from(v.population);
    }
    let inside: u64 = totals.keys().map(|d| got.get(d).copied().unwrap_or(0)).sum();
    let off = (inside as f64 - expected as f64).abs() / expected as f64;
    assert!(off < 0.03, "villages hold {inside}, the 2020 totals {expected}");
    for (district, total) in &totals {
        let have = got.get(district).copied().unwrap_or(0);
        assert!(have.abs_diff(*total) * 10 <= *total, "{district}: {have} vs {total}");
    }
    // The 13 places just outside the border are kept with an estimate.
    let outside = world.villages().iter().filter(|v| world.places.region(v.district) == "outside Tajikistan");
    assert_eq!(outside.clone().count(), 13);
    assert!(outside.clone().all(|v| v.population_estimated && v.population > 0));
}

#[test]
fn every_region_has_every_skill() {
    let (world, _) = scenario::load(&tajikistan()).unwrap();
    let mut by_region: BTreeMap<&str, BTreeSet<Skill>> = BTreeMap::new();
    for t in world.teams() {
        let region = t.id.split('-').nth(1).unwrap();
        by_region.entry(region).or_default().extend(t.skills.iter().copied());
        assert!((2..=3).contains(&t.skills.len()), "{} has {} skills", t.id, t.skills.len());
    }
    assert_eq!(by_region.len(), 5);
    for (region, skills) in by_region {
        assert_eq!(skills.len(), Skill::ALL.len(), "{region} lacks a skill: {skills:?}");
    }
}

const VILLAGES_HEADER: &str = "id,name,region,district,lat,lon,population,population_estimated,elevation_m\n";
const SITES_HEADER: &str =
    "id,name,kind,region,district,lat,lon,capacity,capacity_source,floor_area_m2,occupancy,status,services\n";
const TEAMS_HEADER: &str = "id,name,skills,district,lat,lon,status,devices\n";

fn write(dir: &Path, file: &str, bytes: &[u8]) {
    std::fs::write(dir.join(file), bytes).unwrap();
}

fn fixture(villages: &[u8], sites: &[u8], teams: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "villages.csv", villages);
    write(dir.path(), "sites.csv", sites);
    write(dir.path(), "teams.csv", teams);
    dir
}

fn good_sites() -> String {
    format!(
        "{SITES_HEADER}osm:way:1,School 1,school,Khatlon,Vakhsh,37.7,68.8,200,floor_area,900.0,0,open,water\n"
    )
}

fn good_teams() -> String {
    format!("{TEAMS_HEADER}react-a-01,A,medical;wash,Vakhsh,37.7,68.8,available,owntracks:a/phone\n")
}

/// The rejection on `line` of `file`, or a panic listing them all.
fn rejection<'a>(rejected: &'a [RejectedRow], file: &str, line: u64) -> &'a RejectedRow {
    rejected
        .iter()
        .find(|r| r.file == file && r.line == line)
        .unwrap_or_else(|| panic!("no rejection at {file}:{line} in {rejected:#?}"))
}

#[test]
fn bad_village_rows_are_reported_and_good_rows_still_load() {
    let mut villages = String::from(VILLAGES_HEADER);
    villages.push_str("wof:1,Abdu,Khatlon,Vakhsh,37.7,68.8,1200,false,500\n"); // line 2: good
    villages.push_str("wof:2,Bad number,Khatlon,Vakhsh,37.7,68.8,lots,false,\n"); // 3
    villages.push_str("wof:3,Too far north,Khatlon,Vakhsh,95,68.8,10,true,\n"); // 4
    villages.push_str("wof:1,Again,Khatlon,Vakhsh,37.7,68.8,10,true,\n"); // 5: duplicate id
    villages.push_str("wof:4,Short,Khatlon,Vakhsh,37.7\n"); // 6: missing columns
    villages.push_str("wof:5,No district,Khatlon,,37.7,68.8,10,true,\n"); // 7
    villages.push_str("wof:6,Negative,Khatlon,Vakhsh,37.7,68.8,-5,true,\n"); // 8
    villages.push_str("wof:7,Bad flag,Khatlon,Vakhsh,37.7,68.8,5,maybe,\n"); // 9
    villages.push_str("wof:8,Far east,Khatlon,Vakhsh,37.7,190,5,true,\n"); // 10
    villages.push_str("wof:9,Second good,Sughd,Asht,40.6,70.0,300,true,\n"); // 11: good
    let dir = fixture(villages.as_bytes(), good_sites().as_bytes(), good_teams().as_bytes());

    let (world, report) = scenario::load(dir.path()).unwrap();
    assert_eq!(world.villages().len(), 2, "{report}");
    assert_eq!(world.village(world.village_idx("wof:1").unwrap()).name, "Abdu");
    assert!(world.village_idx("wof:9").is_some());
    assert_eq!(report.rejected.len(), 8, "{report}");

    let check = |line, id: &str, field: &str, reason_part: &str| {
        let r = rejection(&report.rejected, "villages.csv", line);
        assert_eq!(r.id.as_deref(), Some(id), "{r}");
        assert_eq!(r.field, field, "{r}");
        assert!(r.reason.contains(reason_part), "{r}");
    };
    check(3, "wof:2", "population", "\"lots\"");
    check(4, "wof:3", "lat", "latitude 95 is not within -90..90");
    check(5, "wof:1", "id", "duplicate id, first defined on line 2");
    check(6, "wof:4", "lon", "row has 5 fields, the header has 9");
    check(7, "wof:5", "district", "district is empty");
    check(8, "wof:6", "population", "\"-5\"");
    check(9, "wof:7", "population_estimated", "expected true or false, got \"maybe\"");
    check(10, "wof:8", "lon", "longitude 190 is not within -180..180");

    let text = rejection(&report.rejected, "villages.csv", 4).to_string();
    assert_eq!(text, "villages.csv:4 (wof:3) lat: latitude 95 is not within -90..90");
}

#[test]
fn unknown_kinds_skills_and_garbage_bytes_are_rejected_by_field() {
    let mut sites = good_sites();
    sites.push_str("osm:way:2,Tent,circus,Khatlon,Vakhsh,37.7,68.8,50,default,,0,open,water\n"); // 3
    sites.push_str("osm:way:3,Empty,school,Khatlon,Vakhsh,37.7,68.8,0,default,,0,open,water\n"); // 4
    sites.push_str("osm:way:4,Shut,school,Khatlon,Vakhsh,37.7,68.8,0,default,,0,closed,\n"); // 5: good
    sites.push_str("osm:way:5,Spa,school,Khatlon,Vakhsh,37.7,68.8,9,default,,0,open,sauna\n"); // 6
    sites.push_str("osm:way:6,Guess,school,Khatlon,Vakhsh,37.7,68.8,9,guess,,0,open,\n"); // 7

    let mut teams = good_teams().into_bytes();
    teams.extend_from_slice(b"react-a-02,B,medical;juggling,Vakhsh,37.7,68.8,available,\n"); // 3
    teams.extend_from_slice(b"react-a-03,\xff\xfe\x00garbage,medical,Vakhsh,37.7,68.8,available,\n"); // 4
    teams.extend_from_slice(b"\x00\x01\x02\xc3\x28 binary noise \xf0\x28\x8c\xbc\n"); // 5
    teams.extend_from_slice(b"react-a-04,D,wash,Vakhsh,37.7,68.8,asleep,\n"); // 6
    teams.extend_from_slice(b"react-a-05,E,wash,Vakhsh,37.7,68.8,available,owntracks:a/phone\n"); // 7
    teams.extend_from_slice(b"react-a-06,F,shelter,Vakhsh,37.7,68.8,offline,osmand:7\n"); // 8: good

    let villages = format!("{VILLAGES_HEADER}wof:1,Abdu,Khatlon,Vakhsh,37.7,68.8,1200,false,\n");
    let dir = fixture(villages.as_bytes(), sites.as_bytes(), &teams);
    let (world, report) = scenario::load(dir.path()).unwrap();

    assert_eq!(world.sites().len(), 2, "{report}");
    assert_eq!(world.teams().len(), 2, "{report}");
    assert_eq!(
        report.accepted,
        vec![("villages.csv".to_owned(), 1), ("sites.csv".to_owned(), 2), ("teams.csv".to_owned(), 2)]
    );
    let check = |file, line, field: &str, reason_part: &str| {
        let r = rejection(&report.rejected, file, line);
        assert_eq!(r.field, field, "{r}");
        assert!(r.reason.contains(reason_part), "{r}");
    };
    check("sites.csv", 3, "kind", "unknown SiteKind \"circus\"");
    check("sites.csv", 4, "capacity", "open site cannot have capacity 0");
    check("sites.csv", 6, "services", "\"sauna\"");
    check("sites.csv", 7, "capacity_source", "\"guess\"");
    check("teams.csv", 3, "skills", "unknown Skill \"juggling\"");
    check("teams.csv", 4, "name", "not valid utf-8");
    check("teams.csv", 5, "name", "row has 1 fields, the header has 8");
    check("teams.csv", 6, "status", "\"asleep\"");
    check("teams.csv", 7, "devices", "already mapped to team \"react-a-01\"");
    assert_eq!(rejection(&report.rejected, "teams.csv", 3).id.as_deref(), Some("react-a-02"));
    assert_eq!(report.rejected.len(), 9, "{report}");
    let team = world.team(world.team_idx("react-a-06").unwrap());
    assert_eq!(world.team_of_device("osmand:7"), world.team_idx("react-a-06"));
    assert_eq!(team.skills, vec![Skill::Shelter]);
}

#[test]
fn unusable_directories_and_files_are_errors() {
    let missing = tempfile::tempdir().unwrap().path().join("nope");
    let err = scenario::load(&missing).unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");

    // A header without a required column makes the whole file unusable.
    let villages = "id,name,region,district,lon,population,population_estimated\n";
    let dir = fixture(villages.as_bytes(), good_sites().as_bytes(), good_teams().as_bytes());
    let err = format!("{:#}", scenario::load(dir.path()).unwrap_err());
    assert!(err.contains("villages.csv: header has no column \"lat\""), "{err}");

    let dir = fixture(VILLAGES_HEADER.as_bytes(), good_sites().as_bytes(), good_teams().as_bytes());
    std::fs::remove_file(dir.path().join("teams.csv")).unwrap();
    let err = format!("{:#}", scenario::load(dir.path()).unwrap_err());
    assert!(err.contains("teams.csv"), "{err}");

    // An oversized file is refused before it is read (sparse, so cheap).
    let dir = fixture(VILLAGES_HEADER.as_bytes(), good_sites().as_bytes(), good_teams().as_bytes());
    let big = std::fs::OpenOptions::new().write(true).open(dir.path().join("sites.csv")).unwrap();
    big.set_len(scenario::MAX_FILE_BYTES + 1).unwrap();
    let err = format!("{:#}", scenario::load(dir.path()).unwrap_err());
    assert!(err.contains("more than the 536870912 allowed"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever follows a valid header, loading reports rows instead of
    /// panicking, and never accepts more rows than there are lines.
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut villages = VILLAGES_HEADER.as_bytes().to_vec();
        villages.extend_from_slice(&body);
        let dir = fixture(&villages, good_sites().as_bytes(), good_teams().as_bytes());
        let (world, report) = scenario::load(dir.path()).unwrap();
        let lines = body.iter().filter(|&&b| b == b'\n' || b == b'\r').count() + 1;
        prop_assert!(world.villages().len() <= lines);
        prop_assert_eq!(report.accepted_in("teams.csv"), 1);
    }
}

#[test]
fn build_reproduces_the_checked_in_scenario() {
    let Some(source) = source_data() else { return };
    let out = tempfile::tempdir().unwrap();
    scenario::build::build(&source, out.path()).unwrap();
    let files = [
        "villages.csv",
        "sites.csv",
        "teams.csv",
        "population_totals.csv",
        "ATTRIBUTION.md",
        "boundaries/adm0.geojson",
        "boundaries/adm1.geojson",
        "boundaries/adm2.geojson",
    ];
    for file in files {
        let built = std::fs::read(out.path().join(file)).unwrap();
        let checked_in = std::fs::read(tajikistan().join(file)).unwrap();
        assert!(
            built == checked_in,
            "{file} differs from the checked-in copy: rebuild with `eoc-server scenario build`"
        );
    }
}
