//! The operators' dashboard: the page under `dashboard/`, embedded into the
//! binary at compile time and served at `/`, the scenario's administrative
//! boundaries for its offline base map, and the page's settings.
//!
//! Embedding (rather than reading `dashboard/` at run time) means the
//! server serves the page from any working directory and a release binary
//! needs nothing beside it: `cargo run` needs no npm, since Leaflet is
//! vendored into `dashboard/vendor/` and committed. The asset list is
//! explicit; a test checks it against the files on disk so it cannot drift.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::api::Error;

/// The dashboard's section of the configuration (`[dashboard]`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// An online tile layer under the boundaries, as a Leaflet URL template
    /// (`https://tile.example.org/{z}/{x}/{y}.png`). Empty: boundaries only,
    /// which works with no internet at all.
    pub tile_url: String,
    /// Attribution shown for the tile layer (required by most providers).
    pub tile_attribution: String,
}

/// One file of the page.
#[derive(Debug)]
pub struct Asset {
    /// Path below `dashboard/`, as served below `/`.
    pub path: &'static str,
    /// The file's bytes, as they were at compile time.
    pub bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset {
            path: $path,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboard/", $path)),
        }),*]
    };
}

/// Every file the page loads. Tests, `node_modules/` and build scripts are
/// not served.
pub static ASSETS: &[Asset] = assets![
    "index.html",
    "style.css",
    "src/api.js",
    "src/app.js",
    "src/boards.js",
    "src/format.js",
    "src/i18n.js",
    "src/map.js",
    "src/state.js",
    "src/tools.js",
    "vendor/leaflet/LICENSE",
    "vendor/leaflet/VERSION",
    "vendor/leaflet/leaflet.css",
    "vendor/leaflet/leaflet.js",
    "vendor/leaflet/images/layers-2x.png",
    "vendor/leaflet/images/layers.png",
    "vendor/leaflet/images/marker-icon-2x.png",
    "vendor/leaflet/images/marker-icon.png",
    "vendor/leaflet/images/marker-shadow.png",
];

/// Administrative levels served by `/api/v1/boundaries/{level}`.
pub const BOUNDARY_LEVELS: &[&str] = &["adm0", "adm1", "adm2"];

/// How long a browser may reuse vendored files without asking: they change
/// only with a new Leaflet version, which comes with a new server binary.
const VENDOR_MAX_AGE_S: u32 = 86_400;

/// How long a browser may reuse the boundaries: they change only when the
/// scenario does, which needs a restart.
const BOUNDARY_MAX_AGE_S: u32 = 3_600;

#[derive(Debug, Clone)]
struct DashboardState {
    scenario: Arc<PathBuf>,
    config: Arc<DashboardConfig>,
}

/// The dashboard's routes: the page at `/`, its files, the boundaries of
/// the scenario in `scenario` and the page's settings.
pub fn routes(scenario: &Path, config: &DashboardConfig) -> Router {
    let state =
        DashboardState { scenario: Arc::new(scenario.to_path_buf()), config: Arc::new(config.clone()) };
    let mut router = Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve(0, &headers) }))
        .route("/api/v1/boundaries/{level}", get(boundaries))
        .route("/api/v1/dashboard", get(settings));
    for (i, asset) in ASSETS.iter().enumerate() {
        router = router.route(
            &format!("/{}", asset.path),
            get(move |headers: HeaderMap| async move { serve(i, &headers) }),
        );
    }
    router.with_state(state)
}

/// The content type of a served file, from its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

/// Strong validators for the assets, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS.iter().map(|a| format!("\"{:016x}\"", crate::phones::fnv1a(a.bytes))).collect()
    })
}

fn serve(i: usize, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.get(i) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = etags().get(i).map(String::as_str).unwrap_or_default();
    // The page's own files are revalidated on every load (a cheap 304), so
    // a new server binary is picked up at once; Leaflet is cached longer.
    let cache = if asset.path.starts_with("vendor/") {
        format!("public, max-age={VENDOR_MAX_AGE_S}")
    } else {
        "no-cache".to_owned()
    };
    let mut response = if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type(asset.path))], asset.bytes).into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

async fn boundaries(
    State(state): State<DashboardState>,
    UrlPath(level): UrlPath<String>,
) -> Result<Response, Error> {
    if !BOUNDARY_LEVELS.contains(&level.as_str()) {
        return Err(Error::not_found(
            "level",
            format!("no boundary level {level:?}; the levels are {}", BOUNDARY_LEVELS.join(", ")),
        ));
    }
    let path = state.scenario.join("boundaries").join(format!("{level}.geojson"));
    let bytes = tokio::fs::read(&path).await.map_err(|err| {
        Error::not_found(
            "level",
            format!("the scenario has no {level} boundaries ({}: {err})", path.display()),
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/geo+json".to_owned()),
            (header::CACHE_CONTROL, format!("public, max-age={BOUNDARY_MAX_AGE_S}")),
        ],
        bytes,
    )
        .into_response())
}

async fn settings(State(state): State<DashboardState>) -> Response {
    let c = &state.config;
    let tiles =
        (!c.tile_url.is_empty()).then(|| json!({"url": c.tile_url, "attribution": c.tile_attribution}));
    axum::Json(json!({"tiles": tiles})).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn files_below(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_below(root, &path, out);
            } else {
                out.insert(path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_the_page_loads_is_embedded_and_nothing_else() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboard");
        let mut on_disk = BTreeSet::from(["index.html".to_owned(), "style.css".to_owned()]);
        files_below(&root, &root.join("src"), &mut on_disk);
        files_below(&root, &root.join("vendor"), &mut on_disk);
        let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        assert_eq!(embedded, on_disk, "update ASSETS in dashboard.rs to match dashboard/");
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("src/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("vendor/leaflet/images/layers.png"), "image/png");
        assert_eq!(content_type("vendor/leaflet/LICENSE"), "text/plain; charset=utf-8");
    }
}
