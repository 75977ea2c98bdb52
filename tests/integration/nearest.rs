//! `GET /api/v1/sites/nearest` and `/api/v1/teams/nearest` against a real
//! server: the answers equal a brute-force haversine scan, filters skip
//! what does not match, bad parameters are named, and the routes sit
//! beside `/sites/{id}` and `/teams/{id}`.

use eoc_protocol::types::SiteStatus;
use eoc_server::core::geo::LatLon;
use eoc_server::core::world::World;
use eoc_tests::{Server, data_dir, http, message, test_config, workspace_path};
use serde_json::{Value, json};

fn tajikistan() -> World {
    eoc_server::scenario::load(&workspace_path("config/scenarios/tajikistan")).unwrap().0
}

/// `(id, distance_m)` of each entry of an answer's `list`.
fn ids_and_distances(answer: &Value, list: &str, id: &str) -> Vec<(String, f64)> {
    answer[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {answer}"))
        .iter()
        .map(|s| (s[id].as_str().unwrap().to_owned(), s["distance_m"].as_f64().unwrap()))
        .collect()
}

/// Same sites in the same order, distances within a millimetre; ties in
/// distance may come in either order.
fn assert_same(got: &[(String, f64)], want: &[(String, f64)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: got {got:?} want {want:?}");
    for (i, ((gid, gd), (wid, wd))) in got.iter().zip(want).enumerate() {
        assert!((gd - wd).abs() < 1e-3, "{what}: rank {i} at {gd} m, brute force {wd} m");
        let tied = want.iter().any(|(id, d)| id == gid && (d - wd).abs() < 1e-6);
        assert!(gid == wid || tied, "{what}: rank {i} is {gid}, brute force {wid}");
    }
}

#[tokio::test]
async fn nearest_sites_equal_a_brute_force_scan_of_the_open_sites_with_room() {
    let world = tajikistan();
    let sites = world.sites().to_vec();
    let dir = data_dir();
    let server = Server::start_with(test_config(dir.path()), world).await;

    // One site is reported full, another is filled to capacity while open,
    // a third has 3 places left.
    let full = &sites[100];
    let filled = &sites[200];
    let three_left = &sites[300];
    for (site, body) in [
        (full, json!({"status": "full"})),
        (filled, json!({"occupancy": filled.capacity})),
        (three_left, json!({"occupancy": three_left.capacity - 3})),
    ] {
        let (status, ack) = server.post(&format!("/api/v1/sites/{}/capacity", site.id), &message(body)).await;
        assert_eq!(status, 200, "{ack}");
    }
    let free = |i: usize| -> u32 {
        let s = &sites[i];
        match s.id.as_str() {
            id if id == full.id => 0,
            id if id == filled.id => 0,
            id if id == three_left.id => 3,
            _ if s.status == SiteStatus::Open => s.capacity.saturating_sub(s.occupancy),
            _ => 0,
        }
    };

    // Seeded query points over Tajikistan, plus each changed site's own place.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut unit = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut points: Vec<(f64, f64)> =
        (0..40).map(|_| (36.67 + unit() * 4.38, 67.34 + unit() * 7.81)).collect();
    points.extend([full, filled, three_left].iter().map(|s| (s.at.lat(), s.at.lon())));
    for &(lat, lon) in &points {
        let at = LatLon::new(lat, lon).unwrap();
        for (k, room, radius_m) in [(1, 1, None), (5, 1, None), (10, 4, None), (7, 1, Some(15_000.0))] {
            let mut want: Vec<(String, f64)> = (0..sites.len())
                .filter(|&i| free(i) >= room)
                .map(|i| (sites[i].id.clone(), sites[i].at.distance_m(at)))
                .filter(|(_, d)| radius_m.is_none_or(|r| *d <= r))
                .collect();
            want.sort_by(|a, b| a.1.total_cmp(&b.1));
            want.truncate(k);
            let mut path = format!("/api/v1/sites/nearest?lat={lat}&lon={lon}&k={k}&room={room}");
            if let Some(r) = radius_m {
                path.push_str(&format!("&radius_m={r}"));
            }
            let (status, answer) = server.get(&path).await;
            assert_eq!(status, 200, "{answer}");
            assert_same(&ids_and_distances(&answer, "sites", "site_id"), &want, &path);
            for s in answer["sites"].as_array().unwrap() {
                assert!(
                    s["site_id"] != full.id.as_str() && s["site_id"] != filled.id.as_str(),
                    "{path}: {s}"
                );
            }
        }
    }

    // The room filter is exact: the site with 3 places left is the
    // nearest for room 3 at its own place, and skipped for room 4.
    let at = format!("lat={}&lon={}", three_left.at.lat(), three_left.at.lon());
    let (_, answer) = server.get(&format!("/api/v1/sites/nearest?{at}&k=1&room=3")).await;
    assert_eq!(answer["sites"][0]["site_id"], three_left.id.as_str(), "{answer}");
    assert_eq!(answer["sites"][0]["free"], 3);
    assert_eq!(answer["sites"][0]["distance_m"], 0.0);
    let (_, answer) = server.get(&format!("/api/v1/sites/nearest?{at}&k=1&room=4")).await;
    assert_ne!(answer["sites"][0]["site_id"], three_left.id.as_str(), "{answer}");

    // With include_closed the full site is listed again, with no room.
    let at = format!("lat={}&lon={}", full.at.lat(), full.at.lon());
    let (_, answer) = server.get(&format!("/api/v1/sites/nearest?{at}&k=1&include_closed=true")).await;
    let first = &answer["sites"][0];
    assert_eq!((first["site_id"].as_str(), first["status"].as_str()), (Some(full.id.as_str()), Some("full")));
    assert_eq!(first["free"], 0);
    server.stop().await;
}

#[tokio::test]
async fn free_places_count_what_active_alerts_allocate() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    // A mudslide around v-3 (38.55 N 69.02 E), 10-20 km from both sites:
    // its displaced people are allocated to them.
    let mudslide = message(json!({
        "alert_id": "mud-1", "hazard": "mudslide", "urgency": "immediate", "severity": "extreme",
        "certainty": "observed", "area": {"type": "Circle", "lat": 38.55, "lon": 69.02, "radius_m": 3000},
    }));
    let (status, ack) = server.post("/api/v1/alerts", &mudslide).await;
    assert_eq!(status, 200, "{ack}");
    let (_, answer) = server.get("/api/v1/sites/nearest?lat=38.57&lon=68.79&k=2&room=0").await;
    let listed = answer["sites"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{answer}");
    let mut allocated = 0;
    for s in listed {
        let (_, view) = server.get(&format!("/api/v1/sites/{}", s["site_id"].as_str().unwrap())).await;
        assert_eq!(s["allocated"], view["allocated"]);
        let left = view["capacity"].as_u64().unwrap()
            - view["occupancy"].as_u64().unwrap()
            - view["allocated"].as_u64().unwrap();
        assert_eq!(s["free"].as_u64(), Some(left), "{s}");
        allocated += view["allocated"].as_u64().unwrap();
    }
    assert!(allocated > 0, "the mudslide allocated people to the sites: {answer}");
    server.stop().await;
}

#[tokio::test]
async fn nearest_teams_filter_by_skill_and_availability() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    // t-1 (search and rescue, medical) is beside the point, t-2 (search
    // and rescue) 7 km away, t-3 (wash) 25 km away.
    let near = "/api/v1/teams/nearest?lat=38.57&lon=68.77";
    let (status, answer) = server.get(near).await;
    assert_eq!(status, 200, "{answer}");
    let order: Vec<String> =
        ids_and_distances(&answer, "teams", "team_id").into_iter().map(|t| t.0).collect();
    assert_eq!(order, ["t-1", "t-2", "t-3"]);
    assert_eq!(answer["teams"][0]["skills"], json!(["search_rescue", "medical"]));
    assert_eq!(answer["teams"][0]["status"], "available");

    let (_, answer) = server.get(&format!("{near}&skill=wash")).await;
    let order: Vec<String> =
        ids_and_distances(&answer, "teams", "team_id").into_iter().map(|t| t.0).collect();
    assert_eq!(order, ["t-3"], "only t-3 has wash, however far");
    let (_, answer) = server.get(&format!("{near}&skill=wash&radius_m=10000")).await;
    assert_eq!(answer["teams"], json!([]), "t-3 is beyond 10 km");

    let status = message(json!({"status": "unavailable"}));
    assert_eq!(server.post("/api/v1/teams/t-1/status", &status).await.0, 200);
    let (_, answer) = server.get(&format!("{near}&skill=search_rescue&available=true&k=1")).await;
    let order: Vec<String> =
        ids_and_distances(&answer, "teams", "team_id").into_iter().map(|t| t.0).collect();
    assert_eq!(order, ["t-2"], "t-1 is unavailable: {answer}");
    let (_, answer) = server.get(&format!("{near}&skill=search_rescue&k=1")).await;
    assert_eq!(answer["teams"][0]["status"], "unavailable", "without available=true every team counts");
    server.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_named_and_strangers_are_refused() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    for (path, field) in [
        ("/api/v1/sites/nearest?lat=38.5&lon=68.8&k=0", "k"),
        ("/api/v1/sites/nearest?lat=38.5&lon=68.8&k=101", "k"),
        ("/api/v1/sites/nearest?lat=38.5&lon=68.8&k=ten", "k"),
        ("/api/v1/sites/nearest?lat=95&lon=68.8", "lat"),
        ("/api/v1/sites/nearest?lat=38.5", "lon"),
        ("/api/v1/sites/nearest", "lat"),
        ("/api/v1/sites/nearest?lat=38.5&lon=68.8&radius_m=0", "radius_m"),
        ("/api/v1/teams/nearest?lat=38.5&lon=NaN", "lon"),
        ("/api/v1/teams/nearest?lat=38.5&lon=68.8&skill=cooking", "skill"),
    ] {
        let (status, err) = server.get(path).await;
        assert_eq!((status, err["field"].as_str()), (400, Some(field)), "{path}: {err}");
        assert!(err["message"].as_str().is_some_and(|m| m.contains(field)), "{path}: {err}");
    }
    for path in ["/api/v1/sites/nearest?lat=38.5&lon=68.8", "/api/v1/teams/nearest?lat=38.5&lon=68.8"] {
        let (status, err) = http(server.addr, "GET", path, None, &[]).await;
        assert_eq!((status, err["code"].as_str()), (401, Some("unauthenticated")), "{path}: {err}");
        let (status, _) = http(server.addr, "GET", path, None, &[("Authorization", "Bearer nope")]).await;
        assert_eq!(status, 401, "{path}");
    }
    // A viewer may ask, as it may list sites and teams.
    let viewer = server.user("press", eoc_server::auth::Role::Viewer, None, &[]);
    assert_eq!(server.get_as(&viewer, "/api/v1/sites/nearest?lat=38.5&lon=68.8").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn nearest_routes_sit_beside_the_id_routes() {
    let dir = data_dir();
    let server = Server::start(test_config(dir.path())).await;
    let (status, site) = server.get("/api/v1/sites/s-1").await;
    assert_eq!((status, site["site_id"].as_str()), (200, Some("s-1")));
    let (status, team) = server.get("/api/v1/teams/t-2").await;
    assert_eq!((status, team["team_id"].as_str()), (200, Some("t-2")));
    let (status, answer) = server.get("/api/v1/sites/nearest?lat=38.57&lon=68.79&k=1").await;
    assert_eq!((status, answer["sites"][0]["site_id"].as_str()), (200, Some("s-1")), "{answer}");
    let (status, answer) = server.get("/api/v1/teams/nearest?lat=38.40&lon=68.60&k=1").await;
    assert_eq!((status, answer["teams"][0]["team_id"].as_str()), (200, Some("t-3")), "{answer}");
    // A write to a site still reaches its own route.
    let (status, _) = server.post("/api/v1/sites/s-2/capacity", &message(json!({"occupancy": 10}))).await;
    assert_eq!(status, 200);
    let (status, _) = server.get("/api/v1/sites/no-such-site").await;
    assert_eq!(status, 404);
    server.stop().await;
}
