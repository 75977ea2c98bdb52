//! OASIS Common Alerting Protocol (CAP) 1.2, and 1.1 on input: read,
//! validate, map to and from eoc alerts, write.
//!
//! # Layout
//! - `xml`: a bounded streaming reader (quick-xml) that refuses DTDs,
//!   entity declarations and unknown entities, and bounds size, depth and
//!   element count, into a small element tree.
//! - `parse`: the tree → [`CapAlert`], checking every rule of the
//!   specification and of its XSD (required elements, order, enumerations,
//!   datetimes with a numeric offset, references, circles and polygons),
//!   each problem with its element path (`alert/info[0]/area[1]/polygon[0]`).
//! - [`map`]: [`CapAlert`] → [`crate::messages::AlertMsg`] (hazard,
//!   geometry, earthquake parameters, status, message type and references).
//! - [`export`]: an eoc alert → CAP 1.2 XML, and an Atom feed of alerts.
//!
//! [`parse_cap`] is the one entry point for outside bytes, and the fuzz
//! target's.

mod parse;
mod xml;

pub mod export;
pub mod map;

use chrono::{DateTime, FixedOffset};

use crate::types::{Certainty, Severity, Urgency};
use crate::validate::Problems;

pub use xml::{NS_CAP_1_1, NS_CAP_1_2};

/// Largest accepted CAP document, bytes. Real alerts are a few KiB; a
/// national hydromet polygon of a few thousand points is some 100 KiB.
pub const MAX_CAP_BYTES: usize = 1024 * 1024;
/// Deepest element nesting. CAP's deepest element is
/// `alert/info/area/geocode/value` (5); 16 leaves room for signatures.
pub const MAX_DEPTH: usize = 16;
/// Longest element name (with its prefix) read. CAP's longest is
/// `resourceDesc` and XML-DSig's `CanonicalizationMethod`, 22; the bound
/// keeps every element path and problem message short whatever was sent.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest namespace URI read: CAP's and XML-DSig's are under 50.
pub const MAX_NAMESPACE_CHARS: usize = 256;
/// Most elements in one document: bounds the tree built for any input.
pub const MAX_ELEMENTS: usize = 20_000;
/// Most `<info>` blocks (one per language in practice).
pub const MAX_INFOS: usize = 32;
/// Most `<area>` blocks over the whole alert.
pub const MAX_AREAS: usize = 100;
/// Most `<polygon>`s and `<circle>`s over the whole alert: the same bound
/// as an eoc area's polygons.
pub const MAX_SHAPES: usize = crate::geometry::MAX_POLYGONS;
/// Most polygon points over the whole alert: the same bound as an eoc
/// area's positions.
pub const MAX_POINTS: usize = crate::geometry::MAX_POSITIONS;
/// Most references in `<references>`.
pub const MAX_REFERENCES: usize = 100;

/// Reads and validates one CAP 1.2 (or 1.1) document.
///
/// Never panics and never reads past [`MAX_CAP_BYTES`]; every problem is
/// reported with its element path, all at once when the document is
/// well-formed XML, or the first one when it is not (or is hostile).
pub fn parse_cap(bytes: &[u8]) -> Result<CapAlert, Problems> {
    let doc = xml::read(bytes)?;
    parse::alert(&doc)
}

macro_rules! cap_vocabulary {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every value, in the specification's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The CAP spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// The value of a CAP spelling (exact, case-sensitive as the XSD).
            pub fn from_cap(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
            /// The CAP spellings, for error messages.
            pub const NAMES: &'static [&'static str] = &[$($text),+];
        }
    };
}

cap_vocabulary! {
    /// The version of CAP a document uses.
    CapVersion {
        /// `urn:oasis:names:tc:emergency:cap:1.1`.
        V1_1 => "1.1",
        /// `urn:oasis:names:tc:emergency:cap:1.2`.
        V1_2 => "1.2",
    }
}

cap_vocabulary! {
    /// `<status>`.
    Status {
        /// Actionable by all targeted recipients.
        Actual => "Actual",
        /// Actionable only by designated exercise participants.
        Exercise => "Exercise",
        /// For messages that support alert network internal functions.
        System => "System",
        /// Technical testing only, all recipients disregard.
        Test => "Test",
        /// A preliminary template or draft, not actionable in its current form.
        Draft => "Draft",
    }
}

cap_vocabulary! {
    /// `<msgType>`.
    CapMsgType {
        /// Initial information requiring attention by targeted recipients.
        Alert => "Alert",
        /// Updates and supersedes the earlier message(s) in `<references>`.
        Update => "Update",
        /// Cancels the earlier message(s) in `<references>`.
        Cancel => "Cancel",
        /// Acknowledges receipt and acceptance of the message(s) in `<references>`.
        Ack => "Ack",
        /// Indicates rejection of the message(s) in `<references>`.
        Error => "Error",
    }
}

cap_vocabulary! {
    /// `<scope>`.
    Scope {
        /// For general dissemination to unrestricted audiences.
        Public => "Public",
        /// For users with a known operational requirement (`<restriction>`).
        Restricted => "Restricted",
        /// For specified addresses (`<addresses>`).
        Private => "Private",
    }
}

cap_vocabulary! {
    /// `<category>`.
    Category {
        /// Geophysical (including landslide).
        Geo => "Geo",
        /// Meteorological (including flood).
        Met => "Met",
        /// General emergency and public safety.
        Safety => "Safety",
        /// Law enforcement, military, homeland and local/private security.
        Security => "Security",
        /// Rescue and recovery.
        Rescue => "Rescue",
        /// Fire suppression and rescue.
        Fire => "Fire",
        /// Medical and public health.
        Health => "Health",
        /// Pollution and other environmental.
        Env => "Env",
        /// Public and private transportation.
        Transport => "Transport",
        /// Utility, telecommunication, other non-transport infrastructure.
        Infra => "Infra",
        /// Chemical, biological, radiological, nuclear or high-yield explosive threat or attack.
        Cbrne => "CBRNE",
        /// Other events.
        Other => "Other",
    }
}

cap_vocabulary! {
    /// `<responseType>`.
    ResponseType {
        /// Take shelter in place.
        Shelter => "Shelter",
        /// Relocate.
        Evacuate => "Evacuate",
        /// Make preparations.
        Prepare => "Prepare",
        /// Execute a pre-planned activity.
        Execute => "Execute",
        /// Avoid the subject event.
        Avoid => "Avoid",
        /// Attend to information sources.
        Monitor => "Monitor",
        /// Evaluate the information in this message.
        Assess => "Assess",
        /// The subject event no longer poses a threat.
        AllClear => "AllClear",
        /// No action recommended.
        None => "None",
    }
}

/// CAP spelling of an urgency.
pub fn urgency_name(u: Urgency) -> &'static str {
    match u {
        Urgency::Immediate => "Immediate",
        Urgency::Expected => "Expected",
        Urgency::Future => "Future",
        Urgency::Past => "Past",
        Urgency::Unknown => "Unknown",
    }
}

/// CAP spelling of a severity.
pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Extreme => "Extreme",
        Severity::Severe => "Severe",
        Severity::Moderate => "Moderate",
        Severity::Minor => "Minor",
        Severity::Unknown => "Unknown",
    }
}

/// CAP spelling of a certainty.
pub fn certainty_name(c: Certainty) -> &'static str {
    match c {
        Certainty::Observed => "Observed",
        Certainty::Likely => "Likely",
        Certainty::Possible => "Possible",
        Certainty::Unlikely => "Unlikely",
        Certainty::Unknown => "Unknown",
    }
}

/// One earlier message named in `<references>`: `sender,identifier,sent`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The earlier message's sender.
    pub sender: String,
    /// The earlier message's identifier.
    pub identifier: String,
    /// When the earlier message was sent.
    pub sent: DateTime<FixedOffset>,
}

/// A `valueName`/`value` pair (`<eventCode>`, `<parameter>`, `<geocode>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedValue {
    /// The system-specific name.
    pub value_name: String,
    /// The value.
    pub value: String,
}

/// A point of a polygon or the centre of a circle, WGS 84 degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapPoint {
    /// Latitude, degrees north.
    pub lat: f64,
    /// Longitude, degrees east.
    pub lon: f64,
}

/// A `<circle>`: centre and radius.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapCircle {
    /// The centre.
    pub center: CapPoint,
    /// The radius, kilometres.
    pub radius_km: f64,
}

/// An `<area>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Area {
    /// `<areaDesc>`: the affected area in words.
    pub area_desc: String,
    /// `<polygon>`s: closed rings of at least four points.
    pub polygons: Vec<Vec<CapPoint>>,
    /// `<circle>`s.
    pub circles: Vec<CapCircle>,
    /// `<geocode>`s.
    pub geocodes: Vec<NamedValue>,
    /// `<altitude>`, feet above mean sea level.
    pub altitude_ft: Option<f64>,
    /// `<ceiling>`, feet above mean sea level.
    pub ceiling_ft: Option<f64>,
}

/// A `<resource>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// `<resourceDesc>`.
    pub resource_desc: String,
    /// `<mimeType>`.
    pub mime_type: String,
    /// `<size>`, bytes.
    pub size_bytes: Option<u64>,
    /// `<uri>`.
    pub uri: Option<String>,
    /// Whether a `<derefUri>` (the resource inline, base64) was present;
    /// its content is not kept.
    pub has_deref_uri: bool,
    /// `<digest>` (SHA-1).
    pub digest: Option<String>,
}

/// An `<info>` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// `<language>`; absent means `en-US`.
    pub language: Option<String>,
    /// `<category>`s (at least one).
    pub categories: Vec<Category>,
    /// `<event>`: the subject event in words.
    pub event: String,
    /// `<responseType>`s.
    pub response_types: Vec<ResponseType>,
    /// `<urgency>`.
    pub urgency: Urgency,
    /// `<severity>`.
    pub severity: Severity,
    /// `<certainty>`.
    pub certainty: Certainty,
    /// `<audience>`.
    pub audience: Option<String>,
    /// `<eventCode>`s.
    pub event_codes: Vec<NamedValue>,
    /// `<effective>`.
    pub effective: Option<DateTime<FixedOffset>>,
    /// `<onset>`.
    pub onset: Option<DateTime<FixedOffset>>,
    /// `<expires>`.
    pub expires: Option<DateTime<FixedOffset>>,
    /// `<senderName>`.
    pub sender_name: Option<String>,
    /// `<headline>`.
    pub headline: Option<String>,
    /// `<description>`.
    pub description: Option<String>,
    /// `<instruction>`.
    pub instruction: Option<String>,
    /// `<web>`.
    pub web: Option<String>,
    /// `<contact>`.
    pub contact: Option<String>,
    /// `<parameter>`s.
    pub parameters: Vec<NamedValue>,
    /// `<resource>`s.
    pub resources: Vec<Resource>,
    /// `<area>`s.
    pub areas: Vec<Area>,
}

/// A CAP `<alert>` message, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CapAlert {
    /// Which CAP version (namespace) the document used.
    pub version: CapVersion,
    /// `<identifier>`: unique for its sender.
    pub identifier: String,
    /// `<sender>`: globally unique originator.
    pub sender: String,
    /// `<sent>`, with the sender's offset.
    pub sent: DateTime<FixedOffset>,
    /// `<status>`.
    pub status: Status,
    /// `<msgType>`.
    pub msg_type: CapMsgType,
    /// `<source>`.
    pub source: Option<String>,
    /// `<scope>`.
    pub scope: Scope,
    /// `<restriction>` (scope Restricted).
    pub restriction: Option<String>,
    /// `<addresses>` (scope Private).
    pub addresses: Option<String>,
    /// `<code>`s.
    pub codes: Vec<String>,
    /// `<note>`.
    pub note: Option<String>,
    /// `<references>`, parsed.
    pub references: Vec<Reference>,
    /// `<incidents>`.
    pub incidents: Option<String>,
    /// `<info>` blocks.
    pub infos: Vec<Info>,
}
