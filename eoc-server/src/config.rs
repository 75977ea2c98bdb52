//! Configuration: one struct with sections, layered built-in defaults →
//! `config/eoc.toml` (or `--config FILE`) → `EOC_*` environment variables →
//! command-line flags. Built once in `main` and passed explicitly.
//!
//! Configuration is not a wire type, so it derives `Deserialize` here.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// The configuration file read when `--config` is not given (if present).
pub const DEFAULT_FILE: &str = "config/eoc.toml";

/// Environment variables that are not configuration keys.
const NOT_KEYS: &[&str] = &["EOC_LOG_JSON", "EOC_CONFIG"];

impl Config {
    /// Layers defaults, the TOML file (`file`, or [`DEFAULT_FILE`] if it
    /// exists) and `EOC_*` variables from `env`.
    ///
    /// Variables map to keys by dropping `EOC_`, lowercasing, and reading
    /// `__` as the section separator: `EOC_HTTP__LISTEN` is `http.listen`,
    /// `EOC_MQTT__URL` is `mqtt.url`, `EOC_DATA_DIR` is `data_dir`,
    /// `EOC_ENGINE__ACK_TIMEOUT_S` is `engine.ack_timeout_s`. A value is read
    /// as a TOML value when it parses as one (`true`, `30`, `[1, 2]`), else
    /// as a string; quote it (`'"123"'`) to force a string.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table = match file {
            Some(path) => read_table(path)?,
            None if Path::new(DEFAULT_FILE).exists() => read_table(Path::new(DEFAULT_FILE))?,
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(key) = name.strip_prefix("EOC_") else { continue };
            if NOT_KEYS.contains(&name.as_str()) || key.is_empty() {
                continue;
            }
            let path: Vec<String> = key.split("__").map(str::to_lowercase).collect();
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.clone()));
            set_path(&mut table, &path, parsed).with_context(|| format!("environment variable {name}"))?;
        }
        Config::deserialize(toml::Value::Table(table)).context("invalid configuration")
    }
}

fn read_table(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.parse::<toml::Table>().with_context(|| format!("parsing {}", path.display()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> anyhow::Result<()> {
    match path {
        [] => Ok(()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table.entry(first.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                _ => anyhow::bail!("{first} is not a section"),
            }
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The scenario directory loaded at start.
    pub scenario: PathBuf,
    /// Where the journal and snapshots live.
    pub data_dir: PathBuf,
    /// HTTP and WebSocket listener.
    pub http: HttpConfig,
    /// The MQTT broker connection.
    pub mqtt: MqttConfig,
    /// Journal and snapshots.
    pub journal: JournalConfig,
    /// Impact, allocation and dispatch.
    pub engine: EngineSection,
    /// Phone protocols (OwnTracks, OsmAnd).
    pub phones: PhonesConfig,
    /// The operators' dashboard.
    pub dashboard: crate::dashboard::DashboardConfig,
    /// CAP (Common Alerting Protocol) export.
    pub cap: CapConfig,
    /// Users, audit and limits.
    pub access: AccessConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scenario: PathBuf::from("config/scenarios/tajikistan"),
            data_dir: PathBuf::from("data"),
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            journal: JournalConfig::default(),
            engine: EngineSection::default(),
            phones: PhonesConfig::default(),
            dashboard: crate::dashboard::DashboardConfig::default(),
            cap: CapConfig::default(),
            access: AccessConfig::default(),
        }
    }
}

/// HTTP and WebSocket listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `ADDR:PORT`; port 0 picks a free port (tests).
    pub listen: String,
    /// Frames a subscriber (WebSocket client, MQTT publisher) may fall
    /// behind before it is resynchronised with a fresh snapshot.
    pub fanout_frames: usize,
    /// A WebSocket connection writes at most once per this many
    /// milliseconds; frames published in between go out together with the
    /// next write (0: every frame at once).
    pub fanout_coalesce_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".to_owned(),
            fanout_frames: crate::writer::FRAME_BUFFER,
            fanout_coalesce_ms: crate::ws::COALESCE_MS,
        }
    }
}

/// The MQTT broker connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Whether to connect at all (`--no-mqtt` turns it off).
    pub enabled: bool,
    /// `mqtt://HOST:PORT` (or `mqtts://` for TLS).
    pub url: String,
    /// Client id; fixed so the broker keeps the persistent session.
    pub client_id: String,
    /// Topic prefix of eoc's own topics.
    pub topic_prefix: String,
    /// Broker user name.
    pub username: Option<String>,
    /// Broker password (never logged).
    pub password: Option<String>,
    /// Keep-alive, seconds.
    pub keep_alive_s: u64,
    /// Whether to accept OwnTracks topics (`owntracks/+/+`, `owntracks/+/+/event`).
    pub owntracks: bool,
    /// CA certificates (PEM) for `mqtts://`; default: the system's bundle.
    pub ca_file: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            url: "mqtt://127.0.0.1:1883".to_owned(),
            client_id: "eoc-server".to_owned(),
            topic_prefix: "eoc/v1".to_owned(),
            username: None,
            password: None,
            keep_alive_s: 30,
            owntracks: true,
            ca_file: None,
        }
    }
}

/// Journal and snapshots.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// Take a snapshot after this many journal entries, so restart replays
    /// at most this many.
    pub snapshot_every: u64,
    /// Least time between the starts of two journal commits of small
    /// batches, milliseconds (0: commit as soon as the one before is done).
    /// Under a moderate load each commit (one fsync) then takes what queued
    /// during this time, at the cost of up to this much more wait before an
    /// acknowledgement; an idle server commits a lone message at once, and
    /// a batch of `writer::SPACED_BELOW` (64) entries or more is committed
    /// without waiting.
    pub commit_interval_ms: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig { snapshot_every: 50_000, commit_interval_ms: 2 }
    }
}

/// Impact, allocation and dispatch settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    /// A village is affected at or above this MSK intensity.
    pub threshold_intensity: f64,
    /// `[[min_intensity, rate], …]`: share of residents displaced by band.
    pub displacement_by_intensity: Vec<[f64; 2]>,
    /// Share displaced by area hazards: extreme, severe, moderate, minor, unknown.
    pub displacement_by_severity: [f64; 5],
    /// Sites further than this from a village are not used for it, metres.
    pub allocation_max_distance_m: f64,
    /// A task not acknowledged within this time times out, seconds.
    pub ack_timeout_s: u64,
    /// Whether proposals of actual alerts are assigned at once.
    pub auto_assign: bool,
    /// At most this many villages of one alert get a team.
    pub max_tasks_per_alert: usize,
    /// Teams further than this are not sent, metres.
    pub dispatch_max_distance_m: f64,
}

impl Default for EngineSection {
    fn default() -> Self {
        let e = crate::core::engine::EngineConfig::default();
        EngineSection {
            threshold_intensity: e.impact.threshold_intensity,
            displacement_by_intensity: e.impact.rates.by_intensity.iter().map(|&(i, r)| [i, r]).collect(),
            displacement_by_severity: e.impact.rates.by_severity,
            allocation_max_distance_m: e.allocation.max_distance_m,
            ack_timeout_s: (e.dispatch.ack_timeout_ms / 1000) as u64,
            auto_assign: e.dispatch.auto_assign,
            max_tasks_per_alert: e.dispatch.max_tasks_per_alert,
            dispatch_max_distance_m: e.dispatch.max_distance_m,
        }
    }
}

impl EngineSection {
    /// The core's settings.
    pub fn to_engine_config(&self) -> crate::core::engine::EngineConfig {
        use crate::core::{allocation::AllocParams, engine, impact};
        engine::EngineConfig {
            impact: impact::ImpactParams {
                threshold_intensity: self.threshold_intensity,
                rates: impact::DisplacementRates {
                    by_intensity: self.displacement_by_intensity.iter().map(|&[i, r]| (i, r)).collect(),
                    by_severity: self.displacement_by_severity,
                },
            },
            allocation: AllocParams { max_distance_m: self.allocation_max_distance_m },
            dispatch: engine::DispatchParams {
                ack_timeout_ms: i64::try_from(self.ack_timeout_s.saturating_mul(1000)).unwrap_or(i64::MAX),
                auto_assign: self.auto_assign,
                max_tasks_per_alert: self.max_tasks_per_alert,
                max_distance_m: self.dispatch_max_distance_m,
            },
        }
    }
}

/// Phone protocol settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhonesConfig {
    /// Unit of OsmAnd `speed`: `kn` (Traccar Client's), `kmh`, `mps` or `mph`.
    pub osmand_speed_unit: String,
    /// Radius of the geofences pushed to OwnTracks phones around sites, metres.
    pub waypoint_radius_m: f64,
}

impl Default for PhonesConfig {
    fn default() -> Self {
        PhonesConfig { osmand_speed_unit: "kn".to_owned(), waypoint_radius_m: 150.0 }
    }
}

/// CAP export settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapConfig {
    /// CAP `<sender>` of exported alerts: this EOC's globally unique name.
    pub sender: String,
    /// Absolute URL the server is reached at (`https://eoc.example`), for
    /// the Atom feed's links; empty gives links relative to the feed.
    pub public_url: String,
}

impl Default for CapConfig {
    fn default() -> Self {
        CapConfig { sender: "coes.tj".to_owned(), public_url: String::new() }
    }
}

/// Users, audit trail and limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// On a data directory with no user yet, create the chair `chair` and
    /// write its token to `DATA/first-chair.token`.
    pub first_chair: bool,
    /// Audit records older than this are deleted, days.
    pub audit_keep_days: u32,
    /// Commands per second one chair or operator may send (bursts of
    /// `burst_s` seconds' worth).
    pub operator_per_s: f64,
    /// Commands per second one responder (or one team's MQTT topics) may send.
    pub responder_per_s: f64,
    /// Commands per second one site manager (or one site's MQTT topic) may send.
    pub site_manager_per_s: f64,
    /// A burst may spend this many seconds' worth of the rate at once.
    pub burst_s: f64,
    /// WebSocket connections open at once, at most.
    pub max_ws_connections: usize,
    /// HTTP connections (WebSocket included) open at once, at most.
    pub max_http_connections: usize,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            first_chair: true,
            audit_keep_days: 365,
            operator_per_s: 2_000.0,
            responder_per_s: 20.0,
            site_manager_per_s: 20.0,
            burst_s: 10.0,
            max_ws_connections: 5_000,
            max_http_connections: 10_000,
        }
    }
}
