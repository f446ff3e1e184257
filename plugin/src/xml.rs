//! The small, flat XML documents of this protocol: `req_data`, `res_data`, `res_error`,
//! `notify_data`.
//!
//! Each is a root element holding simple text elements. The reader is strict on purpose: any
//! DOCTYPE is refused (so no entity can be declared, let alone expanded), only the five predefined
//! entities and character references are decoded, and nesting below the root's children is refused.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::Reader;

/// Why an XML document was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlError(pub String);

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(msg: impl Into<String>) -> XmlError {
    XmlError(msg.into())
}

/// The children of a flat document, in document order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlatElements {
    pub root: String,
    pub children: Vec<(String, String)>,
}

impl FlatElements {
    /// The text of the first child with this name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.children
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Escapes text for an element body (`&`, `<`, `>`, and quotes for good measure).
pub fn escape_text(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Builds `<root><k>v</k>…</root>` with every value escaped; children with empty values are left
/// out (Alipay treats an empty element like a missing one, and empty parameters are never sent).
pub fn build_flat(root: &str, children: &[(&str, &str)]) -> String {
    let mut out = String::new();
    out.push('<');
    out.push_str(root);
    out.push('>');
    for (k, v) in children {
        if v.is_empty() {
            continue;
        }
        out.push('<');
        out.push_str(k);
        out.push('>');
        out.push_str(&escape_text(v));
        out.push_str("</");
        out.push_str(k);
        out.push('>');
    }
    out.push_str("</");
    out.push_str(root);
    out.push('>');
    out
}

/// Parses a flat document whose root element must be `expected_root`.
pub fn parse_flat(xml: &str, expected_root: &str) -> Result<FlatElements, XmlError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(false);
    let mut out = FlatElements::default();
    // depth 0: before the root; 1: inside the root; 2: inside a child.
    let mut depth = 0usize;
    let mut current: Option<(String, String)> = None;
    let mut root_closed = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| err(format!("malformed XML: {e}")))?;
        match event {
            Event::Decl(_) | Event::Comment(_) => {}
            Event::PI(_) => return Err(err("processing instructions are not allowed")),
            Event::DocType(_) => return Err(err("DOCTYPE is not allowed (entities are never expanded)")),
            Event::Start(e) => {
                if root_closed {
                    return Err(err("content after the root element"));
                }
                let name = e.name().into_inner().to_owned();
                match depth {
                    0 => {
                        if name != expected_root {
                            return Err(err(format!("expected root <{expected_root}>, found <{name}>")));
                        }
                        out.root = name;
                    }
                    1 => current = Some((name, String::new())),
                    _ => return Err(err(format!("unexpected nested element <{name}>"))),
                }
                depth += 1;
            }
            Event::Empty(e) => {
                let name = e.name().into_inner().to_owned();
                match depth {
                    0 if name == expected_root && !root_closed => {
                        out.root = name;
                        root_closed = true;
                    }
                    0 => return Err(err(format!("expected root <{expected_root}>, found <{name}/>"))),
                    1 => out.children.push((name, String::new())),
                    _ => return Err(err(format!("unexpected nested element <{name}/>"))),
                }
            }
            Event::End(_) => {
                depth = depth.checked_sub(1).ok_or_else(|| err("unbalanced end tag"))?;
                match depth {
                    0 => root_closed = true,
                    1 => {
                        if let Some(child) = current.take() {
                            out.children.push(child);
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) => {
                let text = AsRef::<str>::as_ref(&t);
                push_text(depth, &mut current, text)?;
            }
            Event::CData(t) => {
                let text = AsRef::<str>::as_ref(&t);
                push_text(depth, &mut current, text)?;
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    let c = r
                        .resolve_char_ref()
                        .map_err(|e| err(format!("bad character reference: {e}")))?
                        .ok_or_else(|| err("bad character reference"))?;
                    c.to_string()
                } else {
                    let name = AsRef::<str>::as_ref(&r);
                    resolve_predefined_entity(name)
                        .ok_or_else(|| err(format!("unknown entity &{name}; (entities are never expanded)")))?
                        .to_owned()
                };
                push_text(depth, &mut current, &resolved)?;
            }
            Event::Eof => break,
        }
    }
    if !root_closed || depth != 0 {
        return Err(err(format!("document does not hold a complete <{expected_root}> element")));
    }
    Ok(out)
}

fn push_text(depth: usize, current: &mut Option<(String, String)>, text: &str) -> Result<(), XmlError> {
    match (depth, current) {
        (2, Some((_, value))) => {
            value.push_str(text);
            Ok(())
        }
        // Whitespace between elements is harmless; other stray text is not.
        _ if text.trim().is_empty() => Ok(()),
        _ => Err(err("text outside a child element")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_with_escaping_and_drops_empty_children() {
        let xml = build_flat(
            "direct_trade_create_req",
            &[("subject", "A&B <c> \"d\""), ("merchant_url", ""), ("total_fee", "0.01")],
        );
        assert_eq!(
            xml,
            "<direct_trade_create_req><subject>A&amp;B &lt;c&gt; &quot;d&quot;</subject><total_fee>0.01</total_fee></direct_trade_create_req>"
        );
        let parsed = parse_flat(&xml, "direct_trade_create_req").unwrap();
        assert_eq!(parsed.get("subject"), Some("A&B <c> \"d\""));
    }

    #[test]
    fn parses_in_order_with_declaration_and_references() {
        let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><notify><a>1</a><b>x&amp;y&#x4e2d;&#25991;</b><c/><d><![CDATA[<raw>]]></d></notify>";
        let p = parse_flat(xml, "notify").unwrap();
        assert_eq!(
            p.children,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x&y中文".into()),
                ("c".into(), "".into()),
                ("d".into(), "<raw>".into())
            ]
        );
    }

    #[test]
    fn refuses_doctype_entities_nesting_and_garbage() {
        let attacks = [
            "<!DOCTYPE notify [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><notify><a>&x;</a></notify>",
            "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><notify><a>&lol2;</a></notify>",
            "<notify><a>&x;</a></notify>",
            "<notify><a><b>1</b></a></notify>",
            "<other><a>1</a></other>",
            "<notify><a>1</a>",
            "<notify><a>1</b></notify>",
            "<notify>stray<a>1</a></notify>",
            "<notify><a>1</a></notify><notify/>",
            "",
            "not xml at all",
            "<notify><a>&#xD800;</a></notify>",
        ];
        for a in attacks {
            assert!(parse_flat(a, "notify").is_err(), "accepted: {a}");
        }
    }

    #[test]
    fn a_megabyte_field_is_fine() {
        let big = "x".repeat(1 << 20);
        let xml = format!("<notify><subject>{big}</subject></notify>");
        assert_eq!(parse_flat(&xml, "notify").unwrap().get("subject").unwrap().len(), 1 << 20);
    }
}
