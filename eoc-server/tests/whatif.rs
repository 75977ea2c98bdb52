//! `eoc-server whatif` on the real Tajikistan scenario: what a planner sees.

use std::path::PathBuf;
use std::process::Command;

use eoc_server::core::engine::{Engine, EngineConfig};
use eoc_server::whatif::{WhatifArgs, alert_for, evaluate};

fn scenario() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/scenarios/tajikistan"))
}

fn args(earthquake: &str) -> WhatifArgs {
    WhatifArgs {
        scenario: scenario(),
        earthquake: Some(earthquake.to_owned()),
        hazard: None,
        area: None,
        buffer_m: None,
        severity: "severe".to_owned(),
        threshold: None,
        top: 10,
        json: false,
    }
}

#[test]
fn an_m72_near_rasht_hits_the_rasht_valley_places_everyone_and_sends_rescue_teams() {
    let (world, report) = eoc_server::scenario::load(&scenario()).unwrap();
    assert!(report.rejected.is_empty());
    let msg = alert_for(&args("39.2,70.6,,7.2")).unwrap();
    let w = evaluate(Engine::new(world, EngineConfig::default()), msg).unwrap();
    let total = &w.impact.summary.total;
    assert!(total.villages > 100, "{total:?}");
    // The most exposed district is Rasht, where the epicentre lies.
    assert_eq!(w.impact.summary.districts[0].district, "Rasht District");
    // Villages come most exposed first, each at or above the threshold.
    let intensities: Vec<f64> = w.impact.villages.iter().map(|v| v.intensity.unwrap()).collect();
    assert!(intensities.windows(2).all(|p| p[0] >= p[1]));
    assert!(intensities.iter().all(|&i| i >= 6.0));
    // Everyone displaced is placed or counted short, and sums agree.
    let placed: u64 = w.impact.allocations.iter().map(|a| u64::from(a.persons)).sum();
    let short: u64 = w.impact.shortfall.iter().map(|s| u64::from(s.persons)).sum();
    assert_eq!(placed + short, total.displaced);
    assert_eq!((placed, short), (total.placed, total.shortfall));
    // Teams go to the most urgent villages first, each team once.
    assert!(!w.tasks.is_empty() && w.tasks.len() <= 50);
    let mut teams: Vec<&str> = w.tasks.iter().map(|t| t.team_id.as_str()).collect();
    teams.sort_unstable();
    teams.dedup();
    assert_eq!(teams.len(), w.tasks.len());
    assert_eq!(w.tasks[0].village_id.as_deref(), Some(w.impact.villages[0].village_id.as_str()));
    assert!(w.tasks.iter().all(|t| t.skill.map(|s| s.as_str()) == Some("search_rescue")));
}

#[test]
fn the_command_prints_tables_and_json_and_refuses_bad_input_clearly() {
    let bin = env!("CARGO_BIN_EXE_eoc-server");
    let out = Command::new(bin)
        .args(["whatif", "--scenario"])
        .arg(scenario())
        .args(["--earthquake", "39.2,70.6,,7.2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for heading in ["People exposed by district", "Most exposed villages", "Allocation", "Dispatch"] {
        assert!(text.contains(heading), "missing {heading}:\n{text}");
    }
    assert!(text.contains("Rasht District"));

    let out = Command::new(bin)
        .args(["whatif", "--json", "--scenario"])
        .arg(scenario())
        .args(["--earthquake", "39.2,70.6,10,7.2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["alert"]["earthquake"]["depth_km"], 10.0);
    assert!(json["impact"]["villages"].as_array().is_some_and(|v| !v.is_empty()));

    // A magnitude out of range is refused with the field named.
    let out = Command::new(bin)
        .args(["whatif", "--scenario"])
        .arg(scenario())
        .args(["--earthquake", "39.2,70.6,,12"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("earthquake.magnitude"), "{err}");
}
