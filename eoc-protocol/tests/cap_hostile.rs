//! Hostile CAP: external entities, entity expansion, huge and deeply nested
//! documents are refused with a specific error, and no input makes the
//! parser panic (the fuzz-ready entry point is `parse_cap`).

// Helpers of this test binary may unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use eoc_protocol::cap::{
    MAX_CAP_BYTES, MAX_DEPTH, MAX_ELEMENTS, MAX_NAME_CHARS, MAX_NAMESPACE_CHARS, parse_cap,
};
use eoc_protocol::validate::Problems;
use proptest::prelude::*;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cap").join(path)).unwrap()
}

fn refusal(bytes: &[u8]) -> Problems {
    match parse_cap(bytes) {
        Ok(cap) => panic!("accepted: {cap:?}"),
        Err(p) => p,
    }
}

fn code(p: &Problems) -> &str {
    p.errors[0].code.as_str()
}

#[test]
fn an_external_entity_is_refused_at_the_doctype_and_no_file_is_read() {
    let p = refusal(&fixture("hostile/xxe.xml"));
    assert_eq!(code(&p), "doctype_not_allowed", "{p}");
    assert!(p.errors[0].message.contains("<!DOCTYPE>"), "{p}");
    assert!(!format!("{p:?}").contains("root:"), "nothing of /etc/passwd leaks: {p}");
}

#[test]
fn billion_laughs_is_refused_at_the_doctype() {
    let p = refusal(&fixture("hostile/billion-laughs.xml"));
    assert_eq!(code(&p), "doctype_not_allowed", "{p}");
}

#[test]
fn an_undeclared_entity_is_refused_by_name() {
    let p = refusal(&fixture("hostile/undeclared-entity.xml"));
    assert_eq!(code(&p), "entity_not_allowed", "{p}");
    assert!(p.errors[0].message.contains("&secret;"), "{p}");
    assert_eq!(p.errors[0].field, "alert/identifier");
}

#[test]
fn predefined_and_character_references_are_read() {
    let xml = String::from_utf8(fixture("valid/thunderstorm.xml")).unwrap().replace(
        "<areaDesc>Dushanbe</areaDesc>",
        "<areaDesc>Dushanbe &amp; Vahdat &#x2014; &lt;north&gt; &#1044;</areaDesc>",
    );
    let cap = parse_cap(xml.as_bytes()).unwrap();
    assert_eq!(cap.infos[0].areas[0].area_desc, "Dushanbe & Vahdat \u{2014} <north> Д");
}

#[test]
fn a_100_mb_document_is_refused_by_its_size_alone() {
    // 100 MB of an otherwise plausible document: refused on its length,
    // before a byte of it is parsed.
    let mut big = b"<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><note>".to_vec();
    big.resize(100 * 1024 * 1024, b'a');
    let p = refusal(&big);
    assert_eq!(code(&p), "too_large", "{p}");
    assert!(p.errors[0].message.contains(&MAX_CAP_BYTES.to_string()), "{p}");
    // One byte over the bound is refused too; at the bound it is parsed.
    let over = vec![b' '; MAX_CAP_BYTES + 1];
    assert_eq!(code(&refusal(&over)), "too_large");
    let at = vec![b' '; MAX_CAP_BYTES];
    assert_ne!(code(&refusal(&at)), "too_large");
}

#[test]
fn ten_thousand_deep_nesting_is_refused_at_the_depth_bound() {
    let mut xml = String::from("<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">");
    xml.push_str(&"<note>".repeat(10_000));
    xml.push_str(&"</note>".repeat(10_000));
    xml.push_str("</alert>");
    let p = refusal(xml.as_bytes());
    assert_eq!(code(&p), "too_deep", "{p}");
    assert!(p.errors[0].message.contains(&MAX_DEPTH.to_string()), "{p}");
}

#[test]
fn element_depth_is_bounded_just_past_the_limit() {
    // `alert` and `MAX_DEPTH - 1` nested notes reach the bound: read, and
    // refused only by the CAP rules; one more is refused for its depth.
    let doc = |notes: usize| {
        format!(
            "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">{}x{}</alert>",
            "<note>".repeat(notes),
            "</note>".repeat(notes)
        )
    };
    let at = refusal(doc(MAX_DEPTH - 1).as_bytes());
    assert!(at.errors.iter().all(|e| e.code != "too_deep"), "{at}");
    let over = refusal(doc(MAX_DEPTH).as_bytes());
    assert_eq!(code(&over), "too_deep", "{over}");
    assert!(over.errors[0].message.contains(&format!("more than {MAX_DEPTH} deep")), "{over}");
    // Empty elements count as well.
    let empty = format!(
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">{}<x/>{}</alert>",
        "<note>".repeat(MAX_DEPTH - 1),
        "</note>".repeat(MAX_DEPTH - 1)
    );
    assert_eq!(code(&refusal(empty.as_bytes())), "too_deep");
}

#[test]
fn a_doctype_without_entities_is_refused_too() {
    let xml =
        "<?xml version=\"1.0\"?><!DOCTYPE alert><alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"/>";
    assert_eq!(code(&refusal(xml.as_bytes())), "doctype_not_allowed");
}

/// The problem of `xml`, checked to quote no more than a few dozen
/// characters of the document.
fn short_refusal(xml: &str) -> Problems {
    let p = refusal(xml.as_bytes());
    for e in &p.errors {
        assert!(e.message.chars().count() < 400, "message of {} characters", e.message.chars().count());
        assert!(e.field.chars().count() < 400, "field of {} characters", e.field.chars().count());
    }
    p
}

#[test]
fn problems_never_echo_a_long_value_back() {
    // Found by the cap fuzz target: a declared encoding came back whole in
    // the problem. Every value from the document is cut short.
    let cap = "urn:oasis:names:tc:emergency:cap:1.2";
    let long = "x".repeat(5_000);
    let p = short_refusal(&format!(r#"<?xml version="1.0" encoding="{long}"?><alert xmlns="{cap}"/>"#));
    assert_eq!(code(&p), "invalid_encoding", "{p}");
    // A mismatched end tag, as quick-xml reports it.
    let p = short_refusal(&format!(r#"<alert xmlns="{cap}"><note>x</{long}></alert>"#));
    assert_eq!(code(&p), "invalid_xml", "{p}");
    // Character and entity references.
    let p = short_refusal(&format!(r#"<alert xmlns="{cap}"><note>&#{};</note></alert>"#, "1".repeat(5_000)));
    assert_eq!(code(&p), "invalid_xml", "{p}");
    let p = short_refusal(&format!(r#"<alert xmlns="{cap}"><note>&{long};</note></alert>"#));
    assert_eq!(code(&p), "entity_not_allowed", "{p}");
    // An undeclared prefix.
    let p = short_refusal(&format!(r#"<alert xmlns="{cap}"><{long}:note/></alert>"#));
    assert_eq!(code(&p), "too_long", "{p}");
}

#[test]
fn element_names_from_the_document_are_quoted() {
    // Found by the cap fuzz target: quick-xml reads `<"UTZ-7.` as an
    // element named `"UTZ-7.`, and a message ended with it, period and
    // all. Names the sender chose are quoted like every other value.
    let cap = "urn:oasis:names:tc:emergency:cap:1.2";
    let xml = String::from_utf8(fixture("valid/cancel.xml")).unwrap().replacen(
        "</identifier>",
        "<\"UTZ-7.\n20\"/></identifier>",
        1,
    );
    let p = refusal(xml.as_bytes());
    let e = p.errors.iter().find(|e| e.code == "invalid_content").unwrap();
    assert_eq!(e.message, r#"identifier must hold text, found element "\"UTZ-7.""#);
    for xml in [
        format!(r#"<alert xmlns="{cap}"><identifier>x</identifier><odd./></alert>"#),
        format!(r#"<alert xmlns="{cap}"><odd. xmlns=""/></alert>"#),
        format!(r#"<odd. xmlns="{cap}"/>"#),
        "<odd./>".to_owned(),
        format!(r#"<alert xmlns="{cap}"><y:odd./></alert>"#),
    ] {
        let p = refusal(xml.as_bytes());
        assert!(p.errors.iter().any(|e| e.message.contains(r#""odd.""#)), "{xml}: {p}");
        assert!(p.errors.iter().all(|e| !e.message.ends_with('.')), "{xml}: {p}");
    }
}

#[test]
fn element_names_and_namespaces_are_bounded() {
    let cap = "urn:oasis:names:tc:emergency:cap:1.2";
    // At the bound a name is read (and refused as no CAP element); one
    // character more is refused for its length, at the root too.
    let at = "n".repeat(MAX_NAME_CHARS);
    let p = short_refusal(&format!(r#"<alert xmlns="{cap}"><{at}/></alert>"#));
    assert!(p.errors.iter().all(|e| e.code != "too_long"), "{p}");
    let over = "n".repeat(MAX_NAME_CHARS + 1);
    let p = short_refusal(&format!(r#"<alert xmlns="{cap}"><{over}/></alert>"#));
    assert_eq!((code(&p), p.errors[0].field.as_str()), ("too_long", "alert"), "{p}");
    let p = short_refusal(&format!(r#"<{over} xmlns="{cap}"/>"#));
    assert_eq!(code(&p), "too_long", "{p}");
    // A namespace: at the bound it is read as a foreign element, past it
    // it is refused.
    let ns = |n: usize| format!("urn:{}", "x".repeat(n - 4));
    let p = short_refusal(&format!(
        r#"<alert xmlns="{cap}"><x:sig xmlns:x="{}"/></alert>"#,
        ns(MAX_NAMESPACE_CHARS)
    ));
    assert!(p.errors.iter().all(|e| e.code != "too_long"), "{p}");
    let p = short_refusal(&format!(
        r#"<alert xmlns="{cap}"><x:sig xmlns:x="{}"/></alert>"#,
        ns(MAX_NAMESPACE_CHARS + 1)
    ));
    assert_eq!(code(&p), "too_long", "{p}");
}

#[test]
fn a_flood_of_elements_is_refused_at_the_count_bound() {
    let mut xml = String::from("<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">");
    xml.push_str(&"<code>x</code>".repeat(MAX_ELEMENTS + 1));
    xml.push_str("</alert>");
    assert!(xml.len() < MAX_CAP_BYTES);
    let p = refusal(xml.as_bytes());
    assert_eq!(code(&p), "too_many", "{p}");
}

#[test]
fn too_many_polygon_points_are_refused_with_the_polygon_path() {
    let xml = String::from_utf8(fixture("valid/thunderstorm.xml")).unwrap();
    let ring: String = (0..10_001).map(|i| format!("38.5,{} ", 68.0 + f64::from(i) * 1e-5)).collect();
    let xml = xml.replace(
        "<polygon>38.50,68.70 38.50,68.90 38.65,68.90 38.65,68.70 38.50,68.70</polygon>",
        &format!("<polygon>{ring}</polygon>"),
    );
    let p = refusal(xml.as_bytes());
    assert_eq!(
        (code(&p), p.errors[0].field.as_str()),
        ("too_many", "alert/info[0]/area[0]/polygon[0]"),
        "{p}"
    );
}

#[test]
fn malformed_xml_and_other_encodings_are_refused_with_a_reason() {
    let check = |bytes: &[u8], expect: &str| {
        let p = refusal(bytes);
        assert_eq!(code(&p), expect, "{:?}: {p}", String::from_utf8_lossy(bytes));
    };
    check(b"", "invalid_xml");
    check(
        b"<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><identifier>x</sender></alert>",
        "invalid_xml",
    );
    check(b"<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><identifier>x", "invalid_xml");
    check(b"\xff\xfe<\0a\0", "invalid_encoding");
    check(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><alert/>", "invalid_encoding");
    check(b"<alert><identifier>x</identifier></alert>", "not_cap");
    check(b"<alert xmlns=\"http://www.incident.com/cap/1.0\"/>", "not_cap");
    check(
        b"<x:alert xmlns:x=\"urn:oasis:names:tc:emergency:cap:1.2\"><y:identifier/></x:alert>",
        "invalid_xml",
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random bytes never panic the parser.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_cap(&bytes);
    }

    /// Fixtures with bytes flipped, cut or spliced never panic the parser,
    /// and whatever it refuses it refuses with at least one problem.
    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..12,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cap/valid");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let mut bytes = std::fs::read(&files[which % files.len()]).unwrap();
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, byte),
            }
        }
        if let Err(p) = parse_cap(&bytes) {
            prop_assert!(!p.errors.is_empty());
        }
    }
}
