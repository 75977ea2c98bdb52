//! HTTP: the REST API under `/api/v1`, health, readiness and metrics.
//!
//! Inbound twins of the MQTT topics take the same JSON; an id in the path
//! fills the body's id field (a different id in the body is a `conflict`).
//! Every write answers 2xx only after [`Bus::submit`] returned `Ok`, that is
//! once the command is journalled and applied.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use eoc_protocol::delta::ImpactView;
use eoc_protocol::messages::{
    AlertMsg, SiteCapacityMsg, TaskAssignMsg, TaskUpdateMsg, TeamPositionMsg, TeamStatusMsg,
};
use eoc_protocol::types::{MsgType, SiteStatus, TaskState, TeamStatus};
use eoc_protocol::validate::{MAX_MESSAGE_BYTES, Problems, Validate};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::error;

use crate::access::Access;
use crate::audit::{AuditOutcome, AuditQuery, MAX_QUERY};
use crate::auth::verifier::AuthError;
use crate::auth::{Principal, policy};
use crate::bus::{Accepted, Bus, Edge, Submission, SubmitError};
use crate::core::engine::{Command, Engine};
use crate::core::geo::LatLon;
use crate::core::world::{SiteIdx, TeamIdx, VillageIdx};
use crate::writer::now_ms;

/// Most villages one bbox query returns; a whole-country box would
/// otherwise send every village in one response.
pub const MAX_VILLAGES_PER_QUERY: usize = 5_000;

/// A site counts as "near full" in the situation report at this share of
/// its capacity occupied or allocated.
pub const NEAR_FULL_SHARE: f64 = 0.9;

/// What the handlers share: one reference-counted pointer, since every
/// request clones it once per layer.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state of a server.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Shared {
    /// The bus to the writer.
    pub bus: Bus,
    /// Scenario name and counts, for `/readyz`.
    pub scenario: Arc<ScenarioInfo>,
    /// Cancelled when the server shuts down (closes WebSocket connections).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// CAP export settings (sender, public URL).
    pub cap: Arc<crate::config::CapConfig>,
    /// Credentials, rules, limits and the audit trail.
    pub access: Arc<Access>,
    /// WebSocket connections open now.
    pub ws_open: Arc<std::sync::atomic::AtomicUsize>,
    /// Most WebSocket connections at once.
    pub max_ws: usize,
    /// Least time between two writes of one WebSocket connection
    /// (`http.fanout_coalesce_ms`).
    pub ws_coalesce: std::time::Duration,
}

/// What `/readyz` says about the loaded scenario.
#[derive(Debug, Clone, Default)]
pub struct ScenarioInfo {
    /// The scenario directory (or a label for a world built in code).
    pub source: String,
    /// Villages loaded.
    pub villages: usize,
    /// Sites loaded.
    pub sites: usize,
    /// Teams loaded.
    pub teams: usize,
    /// Rows rejected while loading.
    pub rejected_rows: usize,
}

// ---- errors -------------------------------------------------------------

/// Every error of the API. 4xx carry JSON `{code, field, message}` (and
/// `errors` when there are several); 5xx are logged and opaque.
#[derive(Debug)]
pub struct Error {
    status: StatusCode,
    problems: Problems,
    /// Already in the audit trail (refused or rejected by [`Access::submit`]).
    audited: bool,
}

/// What an error response tells the audit layer: its first problem, and
/// whether it is already audited.
#[derive(Debug, Clone)]
struct ErrorNote {
    problems: Problems,
    audited: bool,
}

impl Error {
    /// A client error with one problem.
    pub fn new(status: StatusCode, code: &str, field: &str, message: impl Into<String>) -> Error {
        let mut problems = Problems::default();
        problems.push(code, field, message);
        Error { status, problems, audited: false }
    }

    /// A client error with every problem of a message.
    pub fn problems(status: StatusCode, problems: Problems) -> Error {
        Error { status, problems, audited: false }
    }

    /// `404 not_found` for an object named in the path.
    pub fn not_found(field: &str, message: impl Into<String>) -> Error {
        Error::new(StatusCode::NOT_FOUND, "not_found", field, message)
    }

    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What is wrong.
    pub fn problem_list(&self) -> &Problems {
        &self.problems
    }
}

impl From<SubmitError> for Error {
    fn from(err: SubmitError) -> Error {
        match err {
            SubmitError::Rejected(problems) => {
                let status = access_status(&problems).unwrap_or_else(|| {
                    match problems.errors.first().map(|e| e.code.as_str()) {
                        Some("unknown") => StatusCode::NOT_FOUND,
                        Some("conflict" | "not_allowed") => StatusCode::CONFLICT,
                        _ => StatusCode::UNPROCESSABLE_ENTITY,
                    }
                });
                Error { status, problems, audited: true }
            }
            SubmitError::Unavailable(why) => {
                Error { audited: true, ..Error::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "", why) }
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let note = ErrorNote { problems: self.problems.clone(), audited: self.audited };
        let mut response = self.render();
        response.extensions_mut().insert(note);
        if response.status() == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl Error {
    fn render(self) -> Response {
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            error!(status = %self.status, problems = %self.problems, "request failed");
            let body = json!({"code": "internal", "field": "", "message": "internal error"});
            return (self.status, Json(body)).into_response();
        }
        let first = self.problems.errors.first();
        let mut body = json!({
            "code": first.map_or("error", |e| e.code.as_str()),
            "field": first.map_or("", |e| e.field.as_str()),
            "message": first.map_or("", |e| e.message.as_str()),
        });
        if self.problems.errors.len() > 1
            && let (Some(obj), Ok(errors)) =
                (body.as_object_mut(), serde_json::to_value(&self.problems.errors))
        {
            obj.insert("errors".to_owned(), errors);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<BytesRejection> for Error {
    fn from(rejection: BytesRejection) -> Error {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "",
                format!("the body exceeds the limit of {MAX_MESSAGE_BYTES} bytes"),
            )
        } else {
            Error::new(rejection.status(), "invalid_body", "", rejection.body_text().to_lowercase())
        }
    }
}

// ---- parsing ------------------------------------------------------------

/// Parses one inbound message: size bound, then JSON with the path of the
/// first type error.
///
/// The edges' one parser, shared with the WebSocket. Semantic validation
/// (`eoc_protocol::validate::parse`, which needs the messages' `Validate`
/// implementations) replaces this body once the protocol crate provides
/// them; until then the engine's own checks (unknown ids, coordinates out
/// of range) are the semantic ones.
/// Parses and validates one inbound message with every rule of the
/// protocol (`eoc_protocol::validate`): size bound, JSON with the path of a
/// type error, then every semantic problem (ranges, geometry, clock skew).
pub fn parse_valid<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, Problems> {
    eoc_protocol::validate::parse(bytes, chrono::Utc::now())
}

/// Parses JSON without the protocol's semantic rules: for bodies that are
/// not protocol messages (or are completed from the URL before validation).
pub fn parse_message<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problems> {
    eoc_protocol::validate::parse_json(bytes)
}

fn bad_request(problems: Problems) -> Error {
    Error::problems(StatusCode::BAD_REQUEST, problems)
}

fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Error> {
    body.map_err(Error::from)
}

/// Fills an id implied by the path into a message whose body may omit it.
fn fill_id(slot: &mut Option<String>, from_path: &str, field: &str) -> Result<(), Error> {
    match slot {
        Some(given) if given != from_path => Err(Error::new(
            StatusCode::BAD_REQUEST,
            "conflict",
            field,
            format!("{field} {given:?} in the body differs from {from_path:?} in the path"),
        )),
        _ => {
            *slot = Some(from_path.to_owned());
            Ok(())
        }
    }
}

/// The token of an `Authorization: Bearer …` header: `Ok(None)` without
/// the header, an error naming what is wrong with a malformed one.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<Option<String>, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let text = value.to_str().map_err(|_| AuthError::Malformed("the header is not ASCII"))?;
    let (scheme, token) =
        text.trim().split_once(' ').ok_or(AuthError::Malformed("expected `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed("expected the Bearer scheme"));
    }
    Ok(Some(token.trim().to_owned()))
}

/// The token a request authenticated with, passed on to handlers beside the
/// identity (the WebSocket checks it again on every message).
#[derive(Debug, Clone)]
pub struct BearerToken(pub String);

/// The bearer token of a request: `Authorization: Bearer …`, or for
/// `/ws` (browsers cannot set headers on a WebSocket) the `token` query
/// parameter. `Ok(None)` when there is none.
fn bearer_of(req: &Request) -> Result<Option<String>, AuthError> {
    if let Some(token) = bearer_token(req.headers())? {
        return Ok(Some(token));
    }
    if req.uri().path() == "/ws" {
        let query = req.uri().query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        return Ok(pairs.into_iter().find(|(k, _)| k == "token" || k == "access_token").map(|(_, v)| v));
    }
    Ok(None)
}

/// The status of a refusal by the access gate (`forbidden` 403,
/// `rate_limited` 429), `None` for any other problem.
pub fn access_status(problems: &Problems) -> Option<StatusCode> {
    match problems.errors.first().map(|e| e.code.as_str()) {
        Some(policy::FORBIDDEN) => Some(StatusCode::FORBIDDEN),
        Some(crate::access::RATE_LIMITED) => Some(StatusCode::TOO_MANY_REQUESTS),
        _ => None,
    }
}

/// `401 unauthenticated` for `err`.
pub fn unauthenticated(err: &AuthError) -> Error {
    let status = if *err == AuthError::Unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::UNAUTHORIZED
    };
    Error::new(status, crate::access::UNAUTHENTICATED, "authorization", err.to_string())
}

/// Authenticates every API and WebSocket request and passes the identity
/// on as an `Extension<Arc<Principal>>`; a refusal is audited.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let verified = match bearer_of(&req) {
        Ok(Some(token)) => state.access.verifier.bearer(&token).await.map(|who| (who, token)),
        Ok(None) => Err(AuthError::Missing),
        Err(err) => Err(err),
    };
    match verified {
        Ok((who, token)) => {
            req.extensions_mut().insert(who);
            req.extensions_mut().insert(BearerToken(token));
            next.run(req).await
        }
        Err(err) => {
            let edge = if req.uri().path() == "/ws" { Edge::WebSocket } else { Edge::Http };
            let error = unauthenticated(&err);
            state.access.refuse(None, edge, &action_of(&req), &error.problems);
            Error { audited: true, ..error }.into_response()
        }
    }
}

fn action_of(req: &Request) -> String {
    format!("{} {}", req.method(), req.uri().path())
}

/// Audits writes refused by a handler before they became commands
/// (malformed body, conflicting ids); submitted commands are audited by
/// [`Access::submit`].
async fn audit_refusals(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let writes = req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD;
    if !writes {
        return next.run(req).await;
    }
    let who = req.extensions().get::<Arc<Principal>>().cloned();
    let action = action_of(&req);
    let response = next.run(req).await;
    if !response.status().is_success()
        && let Some(note) = response.extensions().get::<ErrorNote>()
        && !note.audited
    {
        state.access.refuse(who.as_deref(), Edge::Http, &action, &note.problems);
    }
    response
}

/// The JSON answer to an accepted write.
fn ack(msg_id: &str, accepted: Accepted) -> Json<Value> {
    Json(match accepted {
        Accepted::Applied { seq } => json!({"id": msg_id, "seq": seq}),
        Accepted::Duplicate => json!({"id": msg_id, "duplicate": true}),
    })
}

async fn submit(
    state: &AppState,
    who: &Principal,
    command: Command,
    msg_id: String,
) -> Result<Json<Value>, Error> {
    let s = Submission { command, msg_id: Some(msg_id.clone()), by: String::new(), edge: Edge::Http };
    let accepted = state.access.submit(&state.bus, who, s).await?;
    Ok(ack(&msg_id, accepted))
}

// ---- router -------------------------------------------------------------

/// The whole HTTP surface (REST, `/ws`, health), for `run` and for
/// in-process tests.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/alerts", get(list_alerts).post(post_alert))
        .route("/alerts/preview", post(preview_alert))
        .route("/alerts/{id}", get(get_alert).put(update_alert))
        .route("/alerts/{id}/update", post(update_alert))
        .route("/alerts/{id}/cancel", post(cancel_alert))
        .route("/alerts/{id}/impact", get(get_impact))
        .route("/teams", get(list_teams))
        .route("/teams/{id}", get(get_team))
        .route("/teams/{id}/position", post(post_position))
        .route("/teams/{id}/status", post(post_team_status))
        .route("/sites", get(list_sites))
        .route("/sites/{id}", get(get_site))
        .route("/sites/{id}/capacity", post(post_capacity))
        .route("/villages", get(list_villages))
        .route("/villages/{id}", get(get_village))
        .route("/tasks", get(list_tasks).post(post_task))
        .route("/tasks/{id}", get(get_task))
        .route("/tasks/{id}/ack", post(post_task_ack))
        .route("/tasks/{id}/transition", post(post_task_ack))
        .route("/sitrep", get(sitrep))
        .route("/me", get(me))
        .route("/audit", get(audit))
        .merge(crate::cap_api::routes())
        .merge(crate::nearest_api::routes())
        .fallback(|| async { Error::not_found("", "no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), audit_refusals));
    let gated = Router::new()
        .nest("/api/v1", api)
        .route("/ws", get(crate::ws::upgrade))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), require_ready));
    Router::new()
        .merge(gated)
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .with_state(state)
}

/// Refuses API and WebSocket requests until the journal is replayed.
async fn require_ready(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.bus.readiness().journal_ready() {
        return Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "",
            "the journal is being replayed",
        )
        .into_response();
    }
    next.run(req).await
}

async fn readyz(State(state): State<AppState>) -> Response {
    let r = state.bus.readiness();
    let ready = r.journal_ready();
    let (mqtt, detail) = r.mqtt();
    let s = &state.scenario;
    let body = json!({
        "ready": ready,
        "journal": {
            "replayed": ready,
            "restored_from_row": r.restored_row(),
            "entries_at_start": r.journal_entries(),
            "seq": state.bus.seq(),
        },
        "mqtt": {"state": mqtt.as_str(), "detail": detail},
        "scenario": {
            "source": s.source, "villages": s.villages, "sites": s.sites, "teams": s.teams,
            "rejected_rows": s.rejected_rows,
        },
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.bus.metrics().render(state.bus.queue_depth());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

// ---- inbound twins -------------------------------------------------------

async fn post_alert(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let msg: AlertMsg = parse_valid(&body_of(body)?).map_err(bad_request)?;
    let id = msg.envelope.id.clone();
    submit(&state, &who, Command::Alert(msg), id).await
}

/// Parses an alert message for `/alerts/{id}/…`: the path fills
/// `alert_id`, and `msg_type` defaults to (and must be) `want`.
fn alert_for_path(bytes: &[u8], alert_id: &str, want: MsgType) -> Result<AlertMsg, Error> {
    let mut value: Value = parse_message(bytes).map_err(bad_request)?;
    let Some(obj) = value.as_object_mut() else {
        return Err(Error::new(
            StatusCode::BAD_REQUEST,
            "invalid_type",
            "",
            "the body must be a JSON object",
        ));
    };
    let mut given = obj.get("alert_id").and_then(Value::as_str).map(str::to_owned);
    fill_id(&mut given, alert_id, "alert_id")?;
    obj.insert("alert_id".to_owned(), Value::String(alert_id.to_owned()));
    match obj.get("msg_type").and_then(Value::as_str) {
        None => {
            obj.insert("msg_type".to_owned(), Value::String(want.as_str().to_owned()));
        }
        Some(t) if t == want.as_str() => {}
        Some(t) => {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                "conflict",
                "msg_type",
                format!("msg_type {t:?} does not fit this endpoint, which sends {want}"),
            ));
        }
    }
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    parse_valid(&bytes).map_err(bad_request)
}

async fn update_alert(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(who): Extension<Arc<Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let msg = alert_for_path(&body_of(body)?, &id, MsgType::Update)?;
    let msg_id = msg.envelope.id.clone();
    submit(&state, &who, Command::Alert(msg), msg_id).await
}

async fn cancel_alert(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(who): Extension<Arc<Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let msg = alert_for_path(&body_of(body)?, &id, MsgType::Cancel)?;
    let msg_id = msg.envelope.id.clone();
    submit(&state, &who, Command::Alert(msg), msg_id).await
}

async fn post_position(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(who): Extension<Arc<Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let mut msg: TeamPositionMsg = parse_valid(&body_of(body)?).map_err(bad_request)?;
    fill_id(&mut msg.team_id, &id, "team_id")?;
    let msg_id = msg.envelope.id.clone();
    submit(&state, &who, Command::TeamPosition(msg), msg_id).await
}

async fn post_team_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(who): Extension<Arc<Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let mut msg: TeamStatusMsg = parse_valid(&body_of(body)?).map_err(bad_request)?;
    fill_id(&mut msg.team_id, &id, "team_id")?;
    let msg_id = msg.envelope.id.clone();
    submit(&state, &who, Command::TeamStatus(msg), msg_id).await
}

async fn post_capacity(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(who): Extension<Arc<Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let mut msg: SiteCapacityMsg = parse_valid(&body_of(body)?).map_err(bad_request)?;
    fill_id(&mut msg.site_id, &id, "site_id")?;
    let msg_id = msg.envelope.id.clone();
    submit(&state, &who, Command::SiteCapacity(msg), msg_id).await
}

async fn post_task_ack(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(who): Extension<Arc<Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let mut msg: TaskUpdateMsg = parse_valid(&body_of(body)?).map_err(bad_request)?;
    fill_id(&mut msg.task_id, &id, "task_id")?;
    let msg_id = msg.envelope.id.clone();
    submit(&state, &who, Command::TaskUpdate(msg), msg_id).await
}

async fn post_task(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let msg: TaskAssignMsg = parse_valid(&body_of(body)?).map_err(bad_request)?;
    let msg_id = msg.envelope.id.clone();
    submit(&state, &who, Command::TaskAssign(msg), msg_id).await
}

// ---- reads ---------------------------------------------------------------

fn alert_position(engine: &Engine, id: &str) -> Option<usize> {
    engine.alerts().iter().position(|a| a.msg.alert_id == id)
}

async fn list_alerts(State(state): State<AppState>) -> Json<Value> {
    let alerts = state.bus.read(|e| (0..e.alerts().len()).map(|i| e.alert_view(i)).collect::<Vec<_>>());
    Json(json!({"alerts": alerts}))
}

async fn get_alert(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Error> {
    // `/alerts/{id}.cap` is the alert as CAP: axum routes no suffix after a
    // capture, and an alert named `x.cap` still wins.
    if let Some(alert_id) = id.strip_suffix(".cap")
        && state.bus.read(|e| alert_position(e, &id).is_none())
    {
        return crate::cap_api::export(&state, alert_id);
    }
    let view = state.bus.read(|e| alert_position(e, &id).map(|i| e.alert_view(i)));
    let view = view.ok_or_else(|| Error::not_found("alert_id", format!("no alert {id}")))?;
    Ok(Json(view).into_response())
}

async fn get_impact(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ImpactView>, Error> {
    let view = state.bus.read(|e| alert_position(e, &id).map(|i| e.impact_view(i)));
    view.map(Json).ok_or_else(|| Error::not_found("alert_id", format!("no alert {id}")))
}

/// The impact a draft alert would have, without changing any state: the
/// engine is cloned (a few ms for the Tajikistan scenario) and the alert
/// applied to the clone.
async fn preview_alert(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ImpactView>, Error> {
    policy::may_preview(&who).map_err(|p| Error::problems(StatusCode::FORBIDDEN, p))?;
    let by = who.name.clone();
    let msg: AlertMsg = parse_valid(&body_of(body)?).map_err(bad_request)?;
    let mut engine = state.bus.read(Engine::clone);
    let alert_id = msg.alert_id.clone();
    // Off the async workers: matching a large alert takes milliseconds.
    let view = tokio::task::spawn_blocking(move || {
        engine.apply(&Command::Alert(msg), &by, now_ms())?;
        Ok::<_, Problems>(alert_position(&engine, &alert_id).map(|i| engine.impact_view(i)))
    })
    .await
    .map_err(|err| Error::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "", err.to_string()))?
    .map_err(|p| Error::from(SubmitError::Rejected(p)))?;
    view.map(Json).ok_or_else(|| Error::not_found("alert_id", "the preview produced no alert"))
}

async fn list_teams(State(state): State<AppState>) -> Json<Value> {
    let teams = state
        .bus
        .read(|e| (0..e.world().teams().len()).map(|t| e.team_view(TeamIdx(t as u32))).collect::<Vec<_>>());
    Json(json!({"teams": teams}))
}

async fn get_team(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Error> {
    let view = state.bus.read(|e| e.world().team_idx(&id).map(|t| e.team_view(t)));
    let view = view.ok_or_else(|| Error::not_found("team_id", format!("no team {id}")))?;
    Ok(Json(view).into_response())
}

async fn list_sites(State(state): State<AppState>) -> Json<Value> {
    let sites = state
        .bus
        .read(|e| (0..e.world().sites().len()).map(|s| e.site_view(SiteIdx(s as u32))).collect::<Vec<_>>());
    Json(json!({"sites": sites}))
}

async fn get_site(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Error> {
    let view = state.bus.read(|e| e.world().site_idx(&id).map(|s| e.site_view(s)));
    let view = view.ok_or_else(|| Error::not_found("site_id", format!("no site {id}")))?;
    Ok(Json(view).into_response())
}

fn village_json(e: &Engine, v: VillageIdx) -> Value {
    let w = e.world();
    let village = w.village(v);
    json!({
        "village_id": village.id,
        "name": village.name,
        "region": w.places.region(village.district),
        "district": w.places.district(village.district),
        "lat": village.at.lat(),
        "lon": village.at.lon(),
        "population": village.population,
        "population_estimated": village.population_estimated,
        "elevation_m": village.elevation_m,
    })
}

/// Query of `GET /api/v1/villages`.
#[derive(Debug, serde::Deserialize)]
struct VillageQuery {
    /// `minLon,minLat,maxLon,maxLat`.
    bbox: Option<String>,
}

fn parse_bbox(text: &str) -> Result<(LatLon, LatLon), Error> {
    let bad = |why: &str| Error::new(StatusCode::BAD_REQUEST, "invalid", "bbox", why.to_owned());
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("bbox must be four numbers: minLon,minLat,maxLon,maxLat"))?;
    let [min_lon, min_lat, max_lon, max_lat] = parts[..] else {
        return Err(bad("bbox must be four numbers: minLon,minLat,maxLon,maxLat"));
    };
    let sw = LatLon::new(min_lat, min_lon).map_err(|e| bad(&e.to_string()))?;
    let ne = LatLon::new(max_lat, max_lon).map_err(|e| bad(&e.to_string()))?;
    if min_lon > max_lon || min_lat > max_lat {
        return Err(bad("bbox minimum exceeds its maximum"));
    }
    Ok((sw, ne))
}

async fn list_villages(
    State(state): State<AppState>,
    Query(q): Query<VillageQuery>,
) -> Result<Json<Value>, Error> {
    let Some(bbox) = q.bbox else {
        return Err(Error::new(StatusCode::BAD_REQUEST, "required", "bbox", "bbox is required"));
    };
    let (sw, ne) = parse_bbox(&bbox)?;
    let inside =
        |p: LatLon| p.lat() >= sw.lat() && p.lat() <= ne.lat() && p.lon() >= sw.lon() && p.lon() <= ne.lon();
    let (villages, truncated) = state.bus.read(|e| {
        let mut out = Vec::new();
        let mut truncated = false;
        // The circle through the box's corners holds the box; the exact
        // test filters it.
        let center = LatLon::new((sw.lat() + ne.lat()) / 2.0, (sw.lon() + ne.lon()) / 2.0).unwrap_or(sw);
        let radius_m = center
            .distance_m(sw)
            .max(center.distance_m(ne))
            .max(center.distance_m(LatLon::new(sw.lat(), ne.lon()).unwrap_or(sw)))
            + 1.0;
        let mut hits: Vec<VillageIdx> = e
            .world()
            .village_index()
            .within(center, radius_m)
            .map(|(v, _)| v)
            .filter(|&v| inside(e.world().village(v).at))
            .collect();
        hits.sort();
        if hits.len() > MAX_VILLAGES_PER_QUERY {
            hits.truncate(MAX_VILLAGES_PER_QUERY);
            truncated = true;
        }
        for v in hits {
            out.push(village_json(e, v));
        }
        (out, truncated)
    });
    Ok(Json(json!({"villages": villages, "truncated": truncated, "limit": MAX_VILLAGES_PER_QUERY})))
}

async fn get_village(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Error> {
    let view = state.bus.read(|e| e.world().village_idx(&id).map(|v| village_json(e, v)));
    view.map(Json).ok_or_else(|| Error::not_found("village_id", format!("no village {id}")))
}

async fn list_tasks(State(state): State<AppState>) -> Json<Value> {
    let tasks = state.bus.read(|e| {
        (0..e.tasks().len()).map(|k| e.task_view(crate::core::engine::TaskIdx(k as u32))).collect::<Vec<_>>()
    });
    Json(json!({"tasks": tasks}))
}

async fn get_task(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Error> {
    let view = state.bus.read(|e| {
        e.tasks().iter().position(|t| t.id == id).map(|k| e.task_view(crate::core::engine::TaskIdx(k as u32)))
    });
    let view = view.ok_or_else(|| Error::not_found("task_id", format!("no task {id}")))?;
    Ok(Json(view).into_response())
}

/// The situation report: active alerts with their exposure, totals, sites
/// near full, teams by status and tasks by state.
async fn sitrep(State(state): State<AppState>) -> Json<Value> {
    Json(state.bus.read_with_seq(|e, seq| {
        let mut alerts = Vec::new();
        let (mut displaced, mut placed, mut shortfall) = (0u64, 0u64, 0u64);
        for (i, a) in e.alerts().iter().enumerate() {
            if !a.active() {
                continue;
            }
            let summary = e.exposure_summary(a);
            let total = &summary.total;
            displaced += total.displaced;
            placed += total.placed;
            shortfall += total.shortfall;
            alerts.push(json!({"alert": e.alert_view(i), "exposure": summary}));
        }
        let near_full: Vec<_> = (0..e.world().sites().len())
            .map(|s| SiteIdx(s as u32))
            .filter(|&s| {
                let site = e.world().site(s);
                let used = f64::from(site.occupancy) + f64::from(e.site_allocated(s));
                site.status == SiteStatus::Full
                    || (site.capacity > 0 && used >= NEAR_FULL_SHARE * f64::from(site.capacity))
            })
            .map(|s| e.site_view(s))
            .collect();
        let mut teams = serde_json::Map::new();
        for status in TeamStatus::ALL {
            let n = e.world().teams().iter().filter(|t| t.status == *status).count();
            teams.insert(status.as_str().to_owned(), json!(n));
        }
        let mut tasks = serde_json::Map::new();
        for state in TaskState::ALL {
            let n = e.tasks().iter().filter(|t| t.state == *state).count();
            tasks.insert(state.as_str().to_owned(), json!(n));
        }
        json!({
            "generated_at": chrono::Utc::now(),
            "seq": seq,
            "active_alerts": alerts,
            "totals": {"displaced": displaced, "placed": placed, "shortfall": shortfall},
            "sites_near_full": near_full,
            "teams_by_status": teams,
            "tasks_by_state": tasks,
        })
    }))
}

/// `GET /api/v1/me`: who the token belongs to (name, role, team or sites),
/// so a client shows only the tools its user may use.
async fn me(Extension(who): Extension<Arc<Principal>>) -> Json<Principal> {
    Json((*who).clone())
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, serde::Deserialize)]
struct AuditParams {
    /// RFC 3339 time; only records at or after it.
    since: Option<String>,
    /// RFC 3339 time; only records before it.
    until: Option<String>,
    /// Only this identity.
    by: Option<String>,
    /// accepted, duplicate, rejected or refused.
    outcome: Option<String>,
    /// http, websocket, mqtt, owntracks, osmand.
    edge: Option<String>,
    /// At most this many (default 200, at most 5,000), newest first.
    limit: Option<usize>,
}

fn time_param(field: &str, text: Option<&str>) -> Result<Option<i64>, Error> {
    text.map(|t| {
        chrono::DateTime::parse_from_rfc3339(t).map(|d| d.timestamp_millis()).map_err(|_| {
            Error::new(StatusCode::BAD_REQUEST, "invalid", field, format!("{field} must be an RFC 3339 time"))
        })
    })
    .transpose()
}

/// `GET /api/v1/audit`: the audit trail, newest first (operators and chairs).
async fn audit(
    State(state): State<AppState>,
    Extension(who): Extension<Arc<Principal>>,
    Query(q): Query<AuditParams>,
) -> Result<Json<Value>, Error> {
    policy::may_read_audit(&who).map_err(|p| Error::problems(StatusCode::FORBIDDEN, p))?;
    let outcome = match q.outcome.as_deref() {
        None => None,
        Some("accepted") => Some(AuditOutcome::Accepted),
        Some("duplicate") => Some(AuditOutcome::Duplicate),
        Some("rejected") => Some(AuditOutcome::Rejected),
        Some("refused") => Some(AuditOutcome::Refused),
        Some(_) => {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "outcome",
                "outcome must be accepted, duplicate, rejected or refused",
            ));
        }
    };
    let limit = q.limit.unwrap_or(200);
    if limit == 0 || limit > MAX_QUERY {
        return Err(Error::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "limit",
            format!("limit must be 1-{MAX_QUERY}"),
        ));
    }
    let query = AuditQuery {
        since_ms: time_param("since", q.since.as_deref())?,
        until_ms: time_param("until", q.until.as_deref())?,
        by: q.by,
        outcome,
        edge: q.edge,
        limit,
    };
    let entries = state.access.audit.query(&query).await.map_err(|err| {
        Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "",
            format!("reading the audit trail: {err}"),
        )
    })?;
    Ok(Json(json!({"entries": entries, "dropped": state.access.audit.dropped()})))
}
