//! `GET /api/v1/sites/nearest` and `GET /api/v1/teams/nearest`: the `k`
//! nearest open sites with room, or the nearest teams (with a skill, only
//! available ones), from a point.
//!
//! Every role may ask, as for `GET /api/v1/sites` and `/teams`. The query
//! string is read by [`eoc_protocol::query`] so that each bad parameter
//! gets the API's JSON error naming it (axum's `Query` answers plain text). The answer is
//! built from the engine under the shared read lock and serialised there,
//! borrowing names and ids rather than copying them.

use std::borrow::Cow;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eoc_protocol::query::{self, NearestSite, NearestSites, NearestTeam, NearestTeams};

use crate::api::{AppState, Error};
use crate::core::geo::LatLon;
use crate::core::nearest::{SiteQuery, TeamQuery, nearest_sites, nearest_teams};

pub use eoc_protocol::query::{DEFAULT_K, MAX_K, MAX_RADIUS_M, MAX_ROOM};

/// The nearest-query routes, merged into `/api/v1`. Static segments win
/// over `/sites/{id}` and `/teams/{id}` in axum's router.
pub fn routes() -> Router<AppState> {
    Router::new().route("/sites/nearest", get(sites)).route("/teams/nearest", get(teams))
}

/// `GET /api/v1/sites/nearest?lat=&lon=[&k=5][&room=1][&radius_m=][&include_closed=false]`.
async fn sites(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, Error> {
    let q = site_query(query.as_deref().unwrap_or(""))?;
    let body = state.bus.read(|e| {
        let sites = nearest_sites(e, &q)
            .map(|(s, distance_m)| {
                let site = e.world().site(s);
                NearestSite {
                    site_id: Cow::Borrowed(site.id.as_str()),
                    name: Cow::Borrowed(site.name.as_str()),
                    lat: site.at.lat(),
                    lon: site.at.lon(),
                    distance_m,
                    capacity: site.capacity,
                    occupancy: site.occupancy,
                    allocated: e.site_allocated(s),
                    free: e.site_free(s),
                    status: site.status,
                }
            })
            .collect();
        serde_json::to_vec(&NearestSites { sites })
    });
    json_response(body)
}

/// `GET /api/v1/teams/nearest?lat=&lon=[&k=5][&skill=][&available=false][&radius_m=]`.
async fn teams(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Response, Error> {
    let q = team_query(query.as_deref().unwrap_or(""))?;
    let body = state.bus.read(|e| {
        let teams = nearest_teams(e, &q)
            .map(|(t, distance_m)| {
                let team = e.world().team(t);
                NearestTeam {
                    team_id: Cow::Borrowed(team.id.as_str()),
                    name: Cow::Borrowed(team.name.as_str()),
                    lat: team.at.lat(),
                    lon: team.at.lon(),
                    distance_m,
                    status: team.status,
                    skills: Cow::Borrowed(team.skills.as_slice()),
                }
            })
            .collect();
        serde_json::to_vec(&NearestTeams { teams })
    });
    json_response(body)
}

fn json_response(body: Result<Vec<u8>, serde_json::Error>) -> Result<Response, Error> {
    let body = body.map_err(|err| {
        Error::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "", format!("serialising: {err}"))
    })?;
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

// ---- the query string ---------------------------------------------------

fn refused(problems: eoc_protocol::validate::Problems) -> Error {
    Error::problems(StatusCode::BAD_REQUEST, problems)
}

fn at(lat: f64, lon: f64) -> Result<LatLon, Error> {
    LatLon::new(lat, lon)
        .map_err(|err| Error::new(StatusCode::BAD_REQUEST, "out_of_range", "lat", err.to_string()))
}

/// Reads the parameters of `GET /api/v1/sites/nearest`
/// ([`eoc_protocol::query::site_params`]).
pub fn site_query(query: &str) -> Result<SiteQuery, Error> {
    let p = query::site_params(query).map_err(refused)?;
    Ok(SiteQuery {
        at: at(p.lat, p.lon)?,
        k: p.k,
        room: p.room,
        include_closed: p.include_closed,
        radius_m: p.radius_m,
    })
}

/// Reads the parameters of `GET /api/v1/teams/nearest`
/// ([`eoc_protocol::query::team_params`]).
pub fn team_query(query: &str) -> Result<TeamQuery, Error> {
    let p = query::team_params(query).map_err(refused)?;
    Ok(TeamQuery {
        at: at(p.lat, p.lon)?,
        k: p.k,
        skill: p.skill,
        available_only: p.available_only,
        radius_m: p.radius_m,
    })
}

#[cfg(test)]
mod tests {
    use eoc_protocol::query::MAX_QUERY_BYTES;
    use eoc_protocol::types::Skill;

    use super::*;

    /// `Ok(())` or the (code, field) of the error.
    fn sites_check(query: &str) -> Result<SiteQuery, (String, String)> {
        site_query(query).map_err(|e| {
            let p = &e.problem_list().errors[0];
            (p.code.clone(), p.field.clone())
        })
    }

    fn teams_check(query: &str) -> Result<TeamQuery, (String, String)> {
        team_query(query).map_err(|e| {
            let p = &e.problem_list().errors[0];
            (p.code.clone(), p.field.clone())
        })
    }

    fn err(code: &str, field: &str) -> (String, String) {
        (code.to_owned(), field.to_owned())
    }

    #[test]
    fn site_parameters_and_their_defaults() {
        let q = sites_check("lat=38.5&lon=68.8").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((q.k, q.room, q.include_closed, q.radius_m), (DEFAULT_K, 1, false, None));
        assert_eq!((q.at.lat(), q.at.lon()), (38.5, 68.8));
        let q =
            sites_check("lon=68.8&lat=38.5&k=100&room=250&radius_m=5e4").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((q.k, q.room, q.radius_m), (100, 250, Some(50_000.0)));
        let q = sites_check("lat=38.5&lon=68.8&include_closed=true").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((q.include_closed, q.room), (true, 0), "closed sites have no room, so none is asked");
        let q = sites_check("lat=-90&lon=180&include_closed=true&room=3").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((q.include_closed, q.room), (true, 3));
    }

    #[test]
    fn a_query_string_past_the_bound_is_refused_before_it_is_read() {
        let padding = "0".repeat(MAX_QUERY_BYTES);
        let long = format!("lat=38.{padding}&lon=68.8");
        assert_eq!(sites_check(&long).unwrap_err(), err("too_large", ""));
        assert_eq!(teams_check(&long).unwrap_err(), err("too_large", ""));
        let at_bound = format!("lat=38.{}&lon=68.8", &padding[..MAX_QUERY_BYTES - 16]);
        assert_eq!(at_bound.len(), MAX_QUERY_BYTES);
        assert!(sites_check(&at_bound).is_ok());
    }

    #[test]
    fn each_bad_site_parameter_is_named() {
        for (query, want) in [
            ("lon=68.8", err("required", "lat")),
            ("lat=38.5", err("required", "lon")),
            ("", err("required", "lat")),
            ("lat=north&lon=68.8", err("invalid_type", "lat")),
            ("lat=95&lon=68.8", err("out_of_range", "lat")),
            ("lat=38.5&lon=-180.5", err("out_of_range", "lon")),
            ("lat=NaN&lon=68.8", err("not_finite", "lat")),
            ("lat=38.5&lon=inf", err("not_finite", "lon")),
            ("lat=38.5&lon=68.8&k=0", err("out_of_range", "k")),
            ("lat=38.5&lon=68.8&k=101", err("out_of_range", "k")),
            ("lat=38.5&lon=68.8&k=-1", err("invalid_type", "k")),
            ("lat=38.5&lon=68.8&k=2.5", err("invalid_type", "k")),
            ("lat=38.5&lon=68.8&room=-3", err("invalid_type", "room")),
            ("lat=38.5&lon=68.8&room=1000001", err("out_of_range", "room")),
            ("lat=38.5&lon=68.8&radius_m=0", err("out_of_range", "radius_m")),
            ("lat=38.5&lon=68.8&radius_m=-5", err("out_of_range", "radius_m")),
            ("lat=38.5&lon=68.8&radius_m=3e7", err("out_of_range", "radius_m")),
            ("lat=38.5&lon=68.8&include_closed=yes", err("invalid_type", "include_closed")),
            ("lat=38.5&lon=68.8&radius=5000", err("not_allowed", "radius")),
            ("lat=38.5&lon=68.8&lat=39", err("conflict", "lat")),
        ] {
            assert_eq!(sites_check(query).map(|_| ()), Err(want), "{query}");
        }
    }

    #[test]
    fn team_parameters_and_each_bad_one_named() {
        let q = teams_check("lat=38.5&lon=68.8&skill=medical&available=true&k=3")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((q.k, q.skill, q.available_only, q.radius_m), (3, Some(Skill::Medical), true, None));
        let q = teams_check("lat=38.5&lon=68.8").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((q.k, q.skill, q.available_only), (DEFAULT_K, None, false));
        for (query, want) in [
            ("lat=38.5&lon=68.8&skill=cooking", err("invalid_type", "skill")),
            ("lat=38.5&lon=68.8&available=1", err("invalid_type", "available")),
            ("lat=38.5&lon=68.8&k=500", err("out_of_range", "k")),
            ("lat=38.5&lon=68.8&room=2", err("not_allowed", "room")),
            ("lat=38.5", err("required", "lon")),
        ] {
            assert_eq!(teams_check(query).map(|_| ()), Err(want), "{query}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        /// Any query string, well-formed or not, gives a query that keeps
        /// its bounds or an error naming a field; nothing panics.
        #[test]
        fn any_query_string_is_read_or_refused_with_a_field(
            pairs in proptest::collection::vec(
                (
                    "(lat|lon|k|room|radius_m|include_closed|skill|available|[a-z%=&+]{0,6})",
                    "(-?[0-9]{0,4}(\\.[0-9]{0,3})?(e[0-9]{1,3})?|NaN|inf|true|false|%[0-9A-F]{2}|[ -~]{0,8})",
                ),
                0..8,
            ),
            raw in "[ -~]{0,40}",
        ) {
            let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            for query in [joined.join("&"), raw] {
                match site_query(&query) {
                    Ok(q) => {
                        proptest::prop_assert!((1..=MAX_K).contains(&q.k));
                        proptest::prop_assert!(q.at.lat().abs() <= 90.0 && q.at.lon().abs() <= 180.0);
                        proptest::prop_assert!(q.radius_m.is_none_or(|r| r > 0.0 && r <= MAX_RADIUS_M));
                    }
                    Err(e) => proptest::prop_assert!(!e.problem_list().errors.is_empty()),
                }
                match team_query(&query) {
                    Ok(q) => {
                        proptest::prop_assert!((1..=MAX_K).contains(&q.k));
                        proptest::prop_assert!(q.at.lat().abs() <= 90.0 && q.at.lon().abs() <= 180.0);
                    }
                    Err(e) => {
                        let p = &e.problem_list().errors[0];
                        proptest::prop_assert!(!p.code.is_empty() && !p.message.is_empty());
                    }
                }
            }
        }
    }
}
