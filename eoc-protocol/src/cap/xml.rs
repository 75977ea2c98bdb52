//! A bounded XML reader: bytes → a small element tree, or one specific
//! error.
//!
//! CAP documents come from outside the process, so everything that could
//! make a document cost more than its size is refused before it is built:
//! a `<!DOCTYPE` (and with it every entity declaration, which is the whole
//! of XXE and billion laughs), entity references other than the five
//! predefined ones and character references, a body over
//! [`super::MAX_CAP_BYTES`], nesting deeper than [`super::MAX_DEPTH`],
//! more than [`super::MAX_ELEMENTS`] elements, and names and namespaces
//! longer than [`super::MAX_NAME_CHARS`] and [`super::MAX_NAMESPACE_CHARS`].
//! Every value a problem quotes is cut short, so no answer echoes a
//! document back. quick-xml itself never
//! resolves DTDs or external entities; the refusals here make the reason
//! explicit instead of an "unknown entity" deep in a document.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::{MAX_CAP_BYTES, MAX_DEPTH, MAX_ELEMENTS, MAX_NAME_CHARS, MAX_NAMESPACE_CHARS};
use crate::validate::Problems;

/// The namespace of CAP 1.2.
pub const NS_CAP_1_2: &str = "urn:oasis:names:tc:emergency:cap:1.2";
/// The namespace of CAP 1.1.
pub const NS_CAP_1_1: &str = "urn:oasis:names:tc:emergency:cap:1.1";

/// Which namespace an element is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ns {
    /// CAP 1.2 or 1.1 (the reader checks that a document uses one).
    Cap,
    /// No namespace.
    None,
    /// Any other namespace (an XML signature, an extension).
    Other(String),
}

/// One element: its local name, namespace, text (character data of the
/// element itself, entities resolved) and children.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Element {
    pub name: String,
    pub ns: Ns,
    pub text: String,
    pub children: Vec<Element>,
}

/// The document's root and the CAP namespace it uses.
#[derive(Debug)]
pub(crate) struct Document {
    pub root: Element,
    pub namespace: &'static str,
}

/// Reads a document into a tree, bounded in size, depth and element count.
pub(crate) fn read(bytes: &[u8]) -> Result<Document, Problems> {
    if bytes.len() > MAX_CAP_BYTES {
        return Err(Problems::one(
            "too_large",
            "",
            format!("cap document is {} bytes, the limit is {MAX_CAP_BYTES}", bytes.len()),
        ));
    }
    // CAP is UTF-8 (the specification's XML declaration); a byte-order mark
    // is tolerated.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|err| {
        Problems::one(
            "invalid_encoding",
            "",
            format!("cap document is not utf-8: invalid byte at {}", err.valid_up_to()),
        )
    })?;
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;

    // The open elements; the document root ends up in `root`.
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut namespace: Option<&'static str> = None;
    let mut elements = 0usize;
    loop {
        let at = reader.buffer_position();
        let (resolved, event) = match reader.read_resolved_event() {
            Ok(next) => next,
            Err(err) => {
                let why = clip(&lowercase(&err), ERROR_CHARS);
                return Err(Problems::one(
                    "invalid_xml",
                    "",
                    format!("malformed xml at byte {}: {why}", reader.error_position()),
                ));
            }
        };
        match event {
            Event::DocType(_) => {
                return Err(Problems::one(
                    "doctype_not_allowed",
                    "",
                    format!(
                        "a <!DOCTYPE> at byte {at} is refused: cap documents need no dtd, and eoc never reads dtds or entity declarations"
                    ),
                ));
            }
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(Problems::one("invalid_xml", "", format!("a second root element at byte {at}")));
            }
            Event::Start(start) => {
                let element = open(&start, resolved, &stack, &mut namespace, &mut elements, at)?;
                stack.push(element);
            }
            Event::Empty(start) => {
                let element = open(&start, resolved, &stack, &mut namespace, &mut elements, at)?;
                close(element, &mut stack, &mut root);
            }
            Event::End(_) => {
                // quick-xml checks that the names match.
                if let Some(element) = stack.pop() {
                    close(element, &mut stack, &mut root);
                }
            }
            Event::Text(t) => {
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&t.xml10_content());
                } else if !t.xml10_content().trim().is_empty() {
                    return Err(Problems::one(
                        "invalid_xml",
                        "",
                        format!("text outside the root element at byte {at}"),
                    ));
                }
            }
            Event::CData(t) => {
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&t.xml10_content());
                } else {
                    return Err(Problems::one(
                        "invalid_xml",
                        "",
                        format!("cdata outside the root element at byte {at}"),
                    ));
                }
            }
            Event::GeneralRef(r) => {
                let name = r.xml10_content().into_owned();
                let ch = if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => c,
                        _ => {
                            return Err(Problems::one(
                                "invalid_xml",
                                path_of(&stack),
                                format!(
                                    "character reference &{}; at byte {at} is not a valid character",
                                    clip(&name, QUOTE_CHARS)
                                ),
                            ));
                        }
                    }
                } else {
                    match name.as_str() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        _ => {
                            return Err(Problems::one(
                                "entity_not_allowed",
                                path_of(&stack),
                                format!(
                                    "entity reference &{}; at byte {at} is refused: only &lt; &gt; &amp; &apos; &quot; and character references are read",
                                    clip(&name, QUOTE_CHARS)
                                ),
                            ));
                        }
                    }
                };
                match stack.last_mut() {
                    Some(open) => open.text.push(ch),
                    None => {
                        return Err(Problems::one(
                            "invalid_xml",
                            "",
                            format!("reference outside the root element at byte {at}"),
                        ));
                    }
                }
            }
            Event::Decl(decl) => {
                if let Some(Ok(enc)) = decl.encoding() {
                    let enc = enc.to_ascii_lowercase();
                    if enc != "utf-8" && enc != "utf8" {
                        return Err(Problems::one(
                            "invalid_encoding",
                            "",
                            format!(
                                "cap document declares encoding {:?}, only utf-8 is read",
                                clip(&enc, QUOTE_CHARS)
                            ),
                        ));
                    }
                }
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(Problems::one(
            "invalid_xml",
            path_of(&stack),
            "document ends before its elements are closed",
        ));
    }
    let Some(root) = root else {
        return Err(Problems::one("invalid_xml", "", "document has no root element"));
    };
    let Some(namespace) = namespace else {
        return Err(Problems::one(
            "not_cap",
            "",
            format!(
                "root element {:?} is not in a cap namespace, expected alert in {NS_CAP_1_2} (or {NS_CAP_1_1})",
                clip(&root.name, QUOTE_CHARS)
            ),
        ));
    };
    Ok(Document { root, namespace })
}

/// A new element, counted and checked against the depth bound.
fn open(
    start: &quick_xml::events::BytesStart<'_>,
    resolved: ResolveResult<'_>,
    stack: &[Element],
    namespace: &mut Option<&'static str>,
    elements: &mut usize,
    at: u64,
) -> Result<Element, Problems> {
    *elements += 1;
    if *elements > MAX_ELEMENTS {
        return Err(Problems::one(
            "too_many",
            "",
            format!("cap document has more than {MAX_ELEMENTS} elements"),
        ));
    }
    if stack.len() + 1 > MAX_DEPTH {
        return Err(Problems::one(
            "too_deep",
            path_of(stack),
            format!("elements are nested more than {MAX_DEPTH} deep at byte {at}"),
        ));
    }
    let chars = start.name().as_ref().chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(Problems::one(
            "too_long",
            path_of(stack),
            format!("an element name at byte {at} is {chars} characters, at most {MAX_NAME_CHARS} are read"),
        ));
    }
    let name = start.local_name().as_ref().to_owned();
    let ns = match resolved {
        ResolveResult::Bound(ns) => {
            let uri = ns.as_ref().to_owned();
            let chars = uri.chars().count();
            if chars > MAX_NAMESPACE_CHARS {
                return Err(Problems::one(
                    "too_long",
                    path_of(stack),
                    format!(
                        "element {name:?} at byte {at} is in a namespace of {chars} characters, at most {MAX_NAMESPACE_CHARS} are read"
                    ),
                ));
            }
            match uri.as_str() {
                NS_CAP_1_2 => cap_ns(namespace, NS_CAP_1_2, &uri, at)?,
                NS_CAP_1_1 => cap_ns(namespace, NS_CAP_1_1, &uri, at)?,
                _ => Ns::Other(uri),
            }
        }
        ResolveResult::Unbound => Ns::None,
        ResolveResult::Unknown(prefix) => {
            return Err(Problems::one(
                "invalid_xml",
                path_of(stack),
                format!("element {name:?} at byte {at} uses the undeclared prefix {prefix:?}"),
            ));
        }
    };
    Ok(Element { name, ns, text: String::new(), children: Vec::new() })
}

/// The two CAP namespaces must not be mixed in one document.
fn cap_ns(held: &mut Option<&'static str>, this: &'static str, uri: &str, at: u64) -> Result<Ns, Problems> {
    match held {
        Some(h) if *h != this => Err(Problems::one(
            "invalid_namespace",
            "",
            format!("element at byte {at} is in {uri} but the document uses {h}"),
        )),
        _ => {
            *held = Some(this);
            Ok(Ns::Cap)
        }
    }
}

fn close(element: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// A rough path of the open elements, for errors found while reading.
fn path_of(stack: &[Element]) -> String {
    stack.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join("/")
}

/// At most this many characters of a value from the document are quoted.
const QUOTE_CHARS: usize = 64;
/// At most this many characters of quick-xml's reason are kept: it can
/// quote names from the document (a mismatched end tag).
const ERROR_CHARS: usize = 200;

/// `s`'s first `max` characters, with an ellipsis if there were more.
fn clip(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

fn lowercase(err: &quick_xml::Error) -> String {
    let text = err.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}
