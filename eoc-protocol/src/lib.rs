//! eoc protocol v1: the messages that phones, site managers, chairs and other
//! systems exchange with an eoc server, and the deltas the server sends back.
//!
//! # Layout
//! - [`types`]: the closed vocabularies (hazard, team status, skills, task states…).
//! - [`geometry`]: alert geometry (earthquake source, GeoJSON area, circle).
//! - [`messages`]: inbound messages, one struct per MQTT topic / HTTP endpoint,
//!   each with version, unique id and timestamp ([`messages::Envelope`]).
//! - [`delta`]: what the server publishes: snapshots and ordered deltas.
//! - [`query`]: answers to the nearest-site and nearest-team queries.
//! - [`validate`]: every problem of a message, each with its field path and reason.
//! - [`scenario`]: the record types of scenario files (villages, sites, teams).
//! - [`owntracks`], [`osmand`]: the phone apps' own payloads, read into eoc
//!   units (OwnTracks `vel` km/h, OsmAnd `speed` knots) once, at the edge.
//! - [`cap`]: OASIS CAP 1.2 (and 1.1) alerts: bounded parser, validation
//!   with element paths, mapping to and from [`messages::AlertMsg`], export
//!   and Atom feed.
//! - [`schema`]: JSON Schemas of every message, checked in under `schema/`.
//!
//! Only this crate derives `Serialize`/`Deserialize`; the server converts these
//! wire types into its own validated domain types at the edge.

pub mod cap;
mod codec;
pub mod delta;
pub mod geometry;
pub mod messages;
pub mod osmand;
pub mod owntracks;
pub mod query;
pub mod rfc3339;
pub mod scenario;
pub mod schema;
pub mod types;
pub mod validate;

/// The protocol version every message carries in its `v` field.
pub const PROTOCOL_VERSION: u32 = 1;
