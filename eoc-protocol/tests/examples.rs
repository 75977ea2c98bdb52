//! PROTOCOL.md stays true: its examples are the files under `examples/`,
//! each of which parses and validates as the message its name says; the
//! other JSON blocks parse as what they show.

// Helpers of this test binary may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use eoc_protocol::messages::{
    AlertMsg, Inbound, SiteCapacityMsg, TaskAssignMsg, TaskUpdateMsg, TeamPositionMsg, TeamStatusMsg,
};
use eoc_protocol::owntracks::{self, OwnTracks};
use eoc_protocol::query::{NearestSites, NearestTeams};
use eoc_protocol::validate::{Problems, Validate, parse};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn now() -> DateTime<Utc> {
    "2025-05-14T18:05:00Z".parse().unwrap()
}

fn accept<T: DeserializeOwned + Validate>(name: &str, bytes: &[u8]) {
    if let Err(p) = parse::<T>(bytes, now()) {
        panic!("example {name} is refused: {p}");
    }
}

/// Every example file, by stem.
fn examples() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (p.file_stem().unwrap().to_str().unwrap().to_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn every_example_file_is_a_valid_message() {
    let all = examples();
    assert!(all.len() >= 10, "{all:?}");
    for (name, text) in all {
        let bytes = text.as_bytes();
        match name.split_once('-').map(|(kind, _)| kind) {
            Some("alert") => accept::<AlertMsg>(&name, bytes),
            Some("inbound") => accept::<Inbound>(&name, bytes),
            _ => match name.as_str() {
                "team-position" => accept::<TeamPositionMsg>(&name, bytes),
                "team-status" => accept::<TeamStatusMsg>(&name, bytes),
                "site-capacity" => accept::<SiteCapacityMsg>(&name, bytes),
                "task-update" => accept::<TaskUpdateMsg>(&name, bytes),
                "task-assign" => accept::<TaskAssignMsg>(&name, bytes),
                other => panic!("example {other}: name it after its message"),
            },
        }
    }
}

/// The JSON code blocks of PROTOCOL.md, each with the example name that
/// precedes it (`<!-- example: NAME -->`), if any.
fn doc_blocks() -> Vec<(Option<String>, String)> {
    let doc = std::fs::read_to_string(dir().join("PROTOCOL.md")).unwrap();
    let mut blocks = Vec::new();
    let mut marker: Option<String> = None;
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("<!-- example: ").and_then(|l| l.strip_suffix(" -->")) {
            marker = Some(name.to_owned());
        } else if line == "```json" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((marker.take(), body.join("\n")));
        }
    }
    blocks
}

#[test]
fn protocol_md_shows_the_example_files() {
    let files = examples();
    let blocks = doc_blocks();
    for (name, text) in &files {
        let shown = blocks.iter().find(|(m, _)| m.as_deref() == Some(name.as_str()));
        let (_, body) = shown.unwrap_or_else(|| panic!("examples/{name}.json is not shown in PROTOCOL.md"));
        let file: Value = serde_json::from_str(text).unwrap();
        let doc: Value = serde_json::from_str(body).unwrap();
        assert_eq!(file, doc, "PROTOCOL.md shows a different {name}");
    }
    for (marker, _) in &blocks {
        if let Some(m) = marker {
            assert!(files.iter().any(|(n, _)| n == m), "PROTOCOL.md names a missing example {m}");
        }
    }
}

#[test]
fn protocol_md_other_blocks_are_what_they_claim() {
    let mut checked = 0;
    for (_, body) in doc_blocks().into_iter().filter(|(m, _)| m.is_none()) {
        if body.contains("setWaypoints") {
            // The command shown is what the builder makes of the waypoint it lists.
            let shown: Value = serde_json::from_str(&body).unwrap();
            let wp = &shown["waypoints"]["waypoints"][0];
            let OwnTracks::Waypoint(w) = owntracks::parse(wp.to_string().as_bytes()).unwrap() else {
                panic!()
            };
            assert_eq!(owntracks::set_waypoints_cmd(&[w]), shown);
        } else if body.starts_with("{ \"sites\"") {
            let answer: NearestSites<'_> = serde_json::from_str(&body).unwrap();
            let site = &answer.sites[0];
            assert_eq!(site.free, site.capacity - site.occupancy - site.allocated, "{body}");
        } else if body.starts_with("{ \"teams\"") {
            let answer: NearestTeams<'_> = serde_json::from_str(&body).unwrap();
            assert!(!answer.teams[0].skills.is_empty(), "{body}");
        } else if body.trim_start().starts_with("{\n  \"errors\"") {
            let p: Problems = serde_json::from_str(&body).unwrap();
            assert!(!p.errors.is_empty());
        } else {
            // One frame per line (WebSocket answers).
            for line in body.lines() {
                let frame: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
                assert!(frame["type"] == "ack" || frame["type"] == "error", "{line}");
            }
        }
        checked += 1;
    }
    assert_eq!(
        checked, 5,
        "the waypoints command, the nearest sites and teams, the error body and the websocket answers"
    );
}
