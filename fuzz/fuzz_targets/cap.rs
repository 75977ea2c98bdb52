//! Fuzzes the CAP reader: any bytes must give a CAP alert or problems,
//! never a panic, and an accepted alert must map and export without one.
#![no_main]

use chrono::Utc;
use eoc_protocol::cap::export::{ExportOptions, to_cap_xml};
use eoc_protocol::cap::map::{Mapped, to_alert_msg};
use eoc_protocol::cap::parse_cap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(cap) = parse_cap(bytes) else { return };
    let xml = std::str::from_utf8(bytes).ok();
    if let Ok(Mapped::Alert { msg, .. }) = to_alert_msg(&cap, xml, Utc::now(), &|_| None) {
        let opts = ExportOptions {
            sender: "coes.tj",
            sent: msg.envelope.ts,
            first_sent: msg.envelope.ts,
            revision: 1,
            affected_radius_km: None,
            area_desc: None,
        };
        // What eoc writes, eoc reads back.
        let out = to_cap_xml(&msg, &opts);
        assert!(parse_cap(out.as_bytes()).is_ok(), "{out}");
    }
});
