//! Fuzzes the query strings of `GET /api/v1/sites/nearest` and
//! `/teams/nearest` as the server reads them: any text gives parameters
//! within their bounds or problems naming a field; a query string over the
//! bound is refused whole.
#![no_main]

mod common;

use eoc_protocol::query::{MAX_K, MAX_QUERY_BYTES, MAX_RADIUS_M, MAX_ROOM, site_params, team_params};
use libfuzzer_sys::fuzz_target;

fn check_common(lat: f64, lon: f64, k: usize, radius_m: Option<f64>) {
    common::check_lat_lon(lat, lon);
    assert!((1..=MAX_K).contains(&k), "k {k}");
    if let Some(r) = radius_m {
        assert!(r.is_finite() && r > 0.0 && r <= MAX_RADIUS_M, "radius_m {r}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else { return };
    match site_params(query) {
        Ok(p) => {
            assert!(query.len() <= MAX_QUERY_BYTES);
            check_common(p.lat, p.lon, p.k, p.radius_m);
            assert!(p.room <= MAX_ROOM);
        }
        Err(p) => {
            common::check_problems(&p);
            assert_eq!(p.errors[0].code == "too_large", query.len() > MAX_QUERY_BYTES, "{p}");
        }
    }
    match team_params(query) {
        Ok(p) => {
            assert!(query.len() <= MAX_QUERY_BYTES);
            check_common(p.lat, p.lon, p.k, p.radius_m);
        }
        Err(p) => {
            common::check_problems(&p);
            assert_eq!(p.errors[0].code == "too_large", query.len() > MAX_QUERY_BYTES, "{p}");
        }
    }
});
