//! Fuzzes the CAP reader: any bytes must give a CAP alert or problems,
//! never a panic. An accepted alert has its points and circles in range and
//! its closed rings; the eoc alert it maps to passes eoc's rules again and
//! is written back as CAP that eoc reads.
#![no_main]

mod common;

use eoc_protocol::cap::export::{ExportOptions, to_cap_xml};
use eoc_protocol::cap::map::{Mapped, to_alert_msg};
use eoc_protocol::cap::{CapAlert, MAX_AREAS, MAX_INFOS, MAX_SHAPES, parse_cap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let cap = match parse_cap(bytes) {
        Ok(cap) => cap,
        Err(p) => {
            common::check_problems(&p);
            return;
        }
    };
    check_cap(&cap);
    let xml = std::str::from_utf8(bytes).ok();
    match to_alert_msg(&cap, xml, common::now(), &|_| None) {
        Ok(Mapped::Alert { msg, .. }) => {
            // What the mapping accepted is a valid eoc alert.
            let p = common::problems_of(msg.as_ref());
            assert!(p.is_empty(), "mapped alert refused: {p}");
            if let Some(area) = &msg.area {
                common::check_area(area);
            }
            if let Some(eq) = &msg.earthquake {
                common::check_lat_lon(eq.lat, eq.lon);
            }
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
            if let Err(p) = parse_cap(out.as_bytes()) {
                panic!("eoc refuses its own export: {p}\n{out}");
            }
        }
        Ok(Mapped::NoAlert { reason }) => assert!(!reason.is_empty()),
        Err(p) => common::check_problems(&p),
    }
});

fn check_cap(cap: &CapAlert) {
    assert!(cap.infos.len() <= MAX_INFOS);
    let areas: Vec<_> = cap.infos.iter().flat_map(|i| &i.areas).collect();
    assert!(areas.len() <= MAX_AREAS);
    let shapes: usize = areas.iter().map(|a| a.polygons.len() + a.circles.len()).sum();
    assert!(shapes <= MAX_SHAPES);
    for area in areas {
        for ring in &area.polygons {
            assert!(ring.len() >= 4, "a ring of {} points", ring.len());
            assert_eq!(ring.first(), ring.last(), "a closed ring");
            for pt in ring {
                common::check_lat_lon(pt.lat, pt.lon);
            }
        }
        for c in &area.circles {
            common::check_lat_lon(c.center.lat, c.center.lon);
            assert!(c.radius_km.is_finite() && c.radius_km >= 0.0, "radius {}", c.radius_km);
        }
    }
}
