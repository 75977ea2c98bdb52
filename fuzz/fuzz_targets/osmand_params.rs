//! Fuzzes the OsmAnd query/form path as the server reads it: the body is
//! decoded as `application/x-www-form-urlencoded` pairs, then read as a fix.
//! Any bytes give a fix or problems; an accepted fix keeps its promises.
#![no_main]

mod common;

use eoc_protocol::osmand::{MAX_PARAMS, parse_params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) else { return };
    match parse_params(&pairs, common::now()) {
        Ok(fix) => {
            assert!(pairs.len() <= MAX_PARAMS);
            common::check_osmand_fix(&fix);
        }
        Err(p) => common::check_problems(&p),
    }
});
