//! Fuzzes the OsmAnd JSON reader (Traccar Client 9 and later): any bytes
//! give a fix or problems; an accepted fix keeps its promises.
#![no_main]

mod common;

use eoc_protocol::osmand::parse_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| match parse_json(data, common::now()) {
    Ok(fix) => common::check_osmand_fix(&fix),
    Err(p) => common::check_problems(&p),
});
