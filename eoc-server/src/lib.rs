//! eoc: the real-time coordination server of an Emergency Operations Centre.
//!
//! # Layout
//! - [`core`]: the sans-IO heart. World model, spatial index, impact,
//!   allocation, dispatch and the [`core::engine::Engine`] that applies
//!   commands and returns deltas. No tokio, sockets or clock reads.
//! - [`scenario`]: loads a scenario directory into a [`core::world::World`],
//!   reporting every rejected row; builds the Tajikistan scenario from the
//!   shared source data.
//! - [`bus`], [`writer`], [`journal`]: the one writer that journals, applies
//!   and publishes; the handle edges use to reach it.
//! - [`api`], [`ws`]: the HTTP and WebSocket edges; [`nearest_api`]: the
//!   nearest-site and nearest-team queries; [`cap_api`]: CAP alerts
//!   in (HTTP, MQTT) and out (`.cap` documents, Atom feed); [`dashboard`]: the
//!   operators' page at `/`; [`metrics`], [`shutdown`],
//!   [`config`]: operations. [`run`] wires them together.
//! - [`whatif`]: the planning command that prints an alert's impact.
//!
//! Data flow: edges parse bytes into [`core::engine::Command`]s (via
//! `eoc-protocol`), the writer journals and applies them to the engine in
//! order, and the engine's deltas fan out to every client.

pub mod access;
pub mod api;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod cap_api;
pub mod config;
pub mod core;
pub mod dashboard;
pub mod journal;
pub mod limits;
pub mod metrics;
pub mod mqtt;
pub mod nearest_api;
pub mod phones;
pub mod scenario;
pub mod shutdown;
pub mod whatif;
pub mod writer;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::api::{AppState, ScenarioInfo};
use crate::bus::{Bus, MqttState, Readiness};
use crate::config::Config;
use crate::core::engine::{Command, Engine};
use crate::core::world::World;
use crate::metrics::Metrics;
use crate::writer::WriterMsg;

/// How often the server checks whether time alone changes the state
/// (acknowledgement timeouts, alert expiry).
pub const TICK_EVERY: Duration = Duration::from_secs(1);

/// The sockets the server serves on, bound by the caller (so tests bind
/// port 0 and read the address).
#[derive(Debug)]
pub struct Listeners {
    /// HTTP and WebSocket.
    pub http: TcpListener,
}

/// Loads the scenario in `config.scenario` and runs the server until
/// `shutdown` is cancelled.
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> anyhow::Result<()> {
    let dir = config.scenario.clone();
    let (world, report) = tokio::task::spawn_blocking(move || scenario::load(&dir))
        .await
        .context("scenario loader panicked")?
        .with_context(|| format!("loading scenario {}", config.scenario.display()))?;
    if !report.rejected.is_empty() {
        warn!(rejected = report.rejected.len(), "scenario rows rejected; see `eoc-server scenario check`");
    }
    let source = config.scenario.display().to_string();
    run_with_world(config, world, (source, report.rejected.len()), listeners, shutdown).await
}

/// Runs the server on `world` until `shutdown` is cancelled: replays the
/// journal, starts the writer, the tick timer, HTTP and WebSocket, and the
/// MQTT edge. On shutdown, stops accepting, drains the writer's queue,
/// checkpoints and flushes the journal. `scenario` is the source label and
/// rejected-row count reported by `/readyz`.
pub async fn run_with_world(
    config: Config,
    world: World,
    scenario: (String, usize),
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let info = ScenarioInfo {
        source: scenario.0,
        villages: world.villages().len(),
        sites: world.sites().len(),
        teams: world.teams().len(),
        rejected_rows: scenario.1,
    };
    let access = open_access(&config)?;
    let mut mqtt_config = config.mqtt.clone();
    if mqtt_config.username.is_none() {
        // The server's own broker account, made by the user store.
        let secret = config.data_dir.join(auth::store::BROKER_DIR).join(auth::store::SERVER_SECRET_FILE);
        if let Ok(password) = std::fs::read_to_string(&secret) {
            mqtt_config.username = Some(auth::store::SERVER_ACCOUNT.to_owned());
            mqtt_config.password = Some(password.trim().to_owned());
        }
    }
    let engine = Engine::new(world, config.engine.to_engine_config());
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    readiness.set_mqtt(if config.mqtt.enabled { MqttState::Disconnected } else { MqttState::Disabled }, None);
    let (bus, mut writer) = writer::start(
        engine,
        &config.data_dir,
        &config.journal,
        config.http.fanout_frames,
        metrics,
        readiness,
    )
    .context("opening the journal")?;
    let stop_tx = writer.stopper().context("the writer's stopper was already taken")?;

    // Everything below stops on `local`: the caller's shutdown, or a
    // failure of the writer.
    let local = shutdown.child_token();
    let tracker = TaskTracker::new();
    let mut writer_done = tracker.spawn_blocking(move || writer.run());

    tracker.spawn(ticker(bus.clone(), local.clone()));

    // The MQTT edge connects (and reconnects) in the background; HTTP and
    // WebSocket serve whether or not a broker is reachable.
    mqtt::spawn(&mqtt_config, &config.phones, bus.clone(), access.clone(), local.clone(), &tracker)
        .context("starting the mqtt edge")?;

    let addr = listeners.http.local_addr().context("reading the http address")?;
    let state = AppState::new(api::Shared {
        bus: bus.clone(),
        scenario: Arc::new(info),
        shutdown: local.clone(),
        cap: Arc::new(config.cap.clone()),
        access: access.clone(),
        ws_open: Arc::default(),
        max_ws: config.access.max_ws_connections,
        ws_coalesce: std::time::Duration::from_millis(config.http.fanout_coalesce_ms),
    });
    let app = api::router(state)
        .merge(phones::routes(bus.clone(), access.clone(), &config.phones))
        .merge(dashboard::routes(&config.scenario, &config.dashboard));
    let http_token = local.clone();
    let listener = limits::Limited::new(listeners.http, config.access.max_http_connections);
    let http = tracker.spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(http_token.cancelled_owned()).await
    });
    info!(%addr, "serving http and websocket");

    let writer_failure = tokio::select! {
        () = local.cancelled() => None,
        done = &mut writer_done => Some(done),
    };
    local.cancel();
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => error!(error = %err, "http server failed"),
        Err(err) => error!(error = %err, "http server task failed"),
    }
    // The edges have stopped accepting; let the writer apply what is queued.
    let result = match writer_failure {
        Some(done) => Err(flatten(done)),
        None => {
            let _ = stop_tx.send(WriterMsg::Stop).await;
            match flatten_ok(writer_done.await) {
                Ok(()) => Ok(()),
                Err(err) => Err(err),
            }
        }
    };
    tracker.close();
    tracker.wait().await;
    access.audit.flush().await;
    info!("server stopped");
    result
}

/// Opens the user store (creating the first chair on an empty one, if so
/// configured) and the audit trail.
fn open_access(config: &Config) -> anyhow::Result<Arc<access::Access>> {
    let verifier = auth::verifier::Verifier::open(&config.data_dir).context("opening the user store")?;
    if config.access.first_chair
        && let Some(path) =
            verifier.with_store(|s| s.ensure_first_chair()).context("creating the first chair")?
    {
        info!(path = %path.display(), "no user yet: created the chair `chair`; its token is in this file");
    }
    let audit = audit::Audit::open(&config.data_dir, config.access.audit_keep_days)
        .context("opening the audit trail")?;
    Ok(Arc::new(access::Access::new(verifier, audit, &config.access)))
}

fn flatten(done: Result<Result<(), journal::JournalError>, tokio::task::JoinError>) -> anyhow::Error {
    match done {
        Ok(Ok(())) => anyhow::anyhow!("the writer stopped unexpectedly"),
        Ok(Err(err)) => anyhow::Error::new(err).context("the journal failed"),
        Err(err) => anyhow::Error::new(err).context("the writer panicked"),
    }
}

fn flatten_ok(done: Result<Result<(), journal::JournalError>, tokio::task::JoinError>) -> anyhow::Result<()> {
    match done {
        Ok(Ok(())) => Ok(()),
        other => Err(flatten(other)),
    }
}

/// Submits a tick whenever time alone would change the state.
async fn ticker(bus: Bus, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(TICK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if !bus.readiness().journal_ready() || !bus.read(|e| e.tick_due(writer::now_ms())) {
            continue;
        }
        if let Err(err) = bus.submit(writer::internal(Command::Tick)).await {
            warn!(error = %err, "tick not applied");
        }
    }
}
