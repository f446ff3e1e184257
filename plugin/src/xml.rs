//! The small, flat XML documents of this protocol: `req_data`, `res_data`, `res_error`,
//! `notify_data`.
//!
//! Each is a root element holding simple text elements. Reading is quick-xml's, kept strict on
//! purpose: any DOCTYPE is refused (so no entity can be declared, let alone expanded), only the
//! five predefined entities and character references are decoded, processing instructions other
//! than the XML declaration are refused, and nesting below the root's children is refused.

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::Reader;

/// Why an XML document was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlError(pub String);

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: &str) -> Result<T, XmlError> {
    Err(XmlError(msg.to_owned()))
}

impl From<quick_xml::Error> for XmlError {
    fn from(e: quick_xml::Error) -> Self {
        XmlError(format!("malformed XML: {e}"))
    }
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

/// Escapes text for an element body (`&`, `<`, `>`, `"`, `'`, and `\r` as `&#13;`).
pub fn escape_text(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Builds `<root><k>v</k>…</root>` with every value escaped; children with empty values are left
/// out (Alipay treats an empty element like a missing one, and empty parameters are never sent).
pub fn build_flat(root: &str, children: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(
        2 * root.len()
            + 5
            + children
                .iter()
                .map(|(k, v)| 2 * k.len() + v.len() + 5)
                .sum::<usize>(),
    );
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
        out.push_str(&quick_xml::escape::escape(*v));
        out.push_str("</");
        out.push_str(k);
        out.push('>');
    }
    out.push_str("</");
    out.push_str(root);
    out.push('>');
    out
}

/// An element's name as text.
fn name_of<'a>(e: &'a BytesStart<'_>) -> Result<&'a str, XmlError> {
    Ok(e.name().into_inner())
}

/// Attributes are ignored, but must be well formed.
fn check_attributes(e: &BytesStart<'_>) -> Result<(), XmlError> {
    for attr in e.attributes() {
        let attr = attr.map_err(|e| XmlError(format!("malformed attribute: {e}")))?;
        if attr.value.contains('<') {
            return err("'<' in an attribute value");
        }
    }
    Ok(())
}

/// A reference: the five predefined entities and character references, nothing else.
fn push_reference(r: &BytesRef<'_>, out: &mut String) -> Result<(), XmlError> {
    let c = match r.resolve_char_ref() {
        Ok(Some(c)) => c,
        Ok(None) => match &**r {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            name => {
                return Err(XmlError(format!(
                    "unknown entity &{name}; (entities are never expanded)"
                )))
            }
        },
        Err(_) => return err("bad character reference"),
    };
    out.push(c);
    Ok(())
}

/// Adds a child, refusing a name given before: these documents name each field once, and a
/// second `<total_fee>` would be read as the first one, whatever the other says (a repeated form
/// field is refused the same way).
fn push_child(out: &mut FlatElements, name: String, value: String) -> Result<(), XmlError> {
    if out.children.iter().any(|(k, _)| *k == name) {
        return Err(XmlError(format!("element <{name}> appears more than once")));
    }
    out.children.push((name, value));
    Ok(())
}

/// Parses a flat document whose root element must be `expected_root`.
pub fn parse_flat(xml: &str, expected_root: &str) -> Result<FlatElements, XmlError> {
    let mut reader = Reader::from_str(xml.strip_prefix('\u{feff}').unwrap_or(xml));
    let config = reader.config_mut();
    config.check_end_names = true;
    config.allow_dangling_amp = false;
    config.allow_unmatched_ends = false;
    config.expand_empty_elements = false;

    /// Where the reader is.
    enum State {
        /// Before the root element (only the declaration, comments and whitespace).
        Prolog,
        /// Inside the root, between children.
        Root,
        /// Inside the named child element.
        Child(String),
        /// After the root element.
        Done,
    }
    let mut state = State::Prolog;
    let mut first = true;
    let mut out = FlatElements::default();
    let mut value = String::new();
    let wrong_root = || XmlError(format!("expected root <{expected_root}>"));
    let nested = |name: &str| XmlError(format!("unexpected nested element inside <{name}>"));
    loop {
        let event = reader.read_event()?;
        let at_start = std::mem::replace(&mut first, false);
        match event {
            Event::DocType(_) => {
                return err(
                    "DOCTYPE and declarations are not allowed (entities are never expanded)",
                )
            }
            Event::PI(_) => return err("processing instructions are not allowed"),
            Event::Decl(_) if at_start => {}
            Event::Decl(_) => return err("misplaced XML declaration"),
            Event::Comment(_) => {}
            Event::Start(e) => {
                check_attributes(&e)?;
                state = match state {
                    State::Prolog if name_of(&e)? == expected_root => {
                        out.root = expected_root.to_owned();
                        State::Root
                    }
                    State::Prolog => return Err(wrong_root()),
                    State::Root => State::Child(name_of(&e)?.to_owned()),
                    State::Child(name) => return Err(nested(&name)),
                    State::Done => return err("content after the root element"),
                };
            }
            Event::Empty(e) => {
                check_attributes(&e)?;
                state = match state {
                    State::Prolog if name_of(&e)? == expected_root => {
                        out.root = expected_root.to_owned();
                        State::Done
                    }
                    State::Prolog => return Err(wrong_root()),
                    State::Root => {
                        push_child(&mut out, name_of(&e)?.to_owned(), String::new())?;
                        State::Root
                    }
                    State::Child(name) => return Err(nested(&name)),
                    State::Done => return err("content after the root element"),
                };
            }
            // quick-xml checks that end tags match their start tags.
            Event::End(_) => {
                state = match state {
                    State::Child(name) => {
                        push_child(&mut out, name, std::mem::take(&mut value))?;
                        State::Root
                    }
                    State::Root => State::Done,
                    State::Prolog | State::Done => return err("unbalanced end tag"),
                };
            }
            Event::Text(t) => match state {
                State::Child(_) => value.push_str(&t),
                _ if t.trim_matches([' ', '\t', '\r', '\n']).is_empty() => {}
                State::Root => return err("text outside a child element"),
                _ => return Err(wrong_root()),
            },
            Event::CData(c) => match state {
                State::Child(_) => value.push_str(&c),
                _ => return err("text outside a child element"),
            },
            Event::GeneralRef(r) => match state {
                State::Child(_) => push_reference(&r, &mut value)?,
                _ => return err("text outside a child element"),
            },
            Event::Eof => {
                return match state {
                    State::Done => Ok(out),
                    State::Prolog => Err(wrong_root()),
                    State::Root | State::Child(_) => Err(XmlError(format!(
                        "document does not hold a complete <{expected_root}> element"
                    ))),
                }
            }
        }
    }
}

/// The leaves of a small nested document (the `single_trade_query` answer): each element without
/// child elements as (`path`, text), in document order. The path is relative to the root, joined
/// with `/`; an element with a `name` attribute gets `@<name>` (`request/param@partner`). The same
/// strictness as [`parse_flat`] (no DOCTYPE, no entities but the five predefined ones, no
/// processing instructions), and at most `max_depth` levels below the root.
pub fn parse_leaves(
    xml: &str,
    expected_root: &str,
    max_depth: usize,
) -> Result<Vec<(String, String)>, XmlError> {
    let mut reader = Reader::from_str(xml.strip_prefix('\u{feff}').unwrap_or(xml));
    let config = reader.config_mut();
    config.check_end_names = true;
    config.allow_dangling_amp = false;
    config.allow_unmatched_ends = false;
    config.expand_empty_elements = false;

    // Open elements below the root: (path segment, saw a child element).
    let mut stack: Vec<(String, bool)> = Vec::new();
    let mut in_root = false;
    let mut done = false;
    let mut first = true;
    let mut value = String::new();
    let mut out = Vec::new();
    let wrong_root = || XmlError(format!("expected root <{expected_root}>"));
    let segment = |e: &BytesStart<'_>| -> Result<String, XmlError> {
        check_attributes(e)?;
        let mut seg = name_of(e)?.to_owned();
        for attr in e.attributes().flatten() {
            if attr.key.into_inner() == "name" {
                // Parameter names are plain; anything with references or separators is refused.
                if attr.value.contains(['&', '/', '@']) {
                    return err("unexpected name attribute");
                }
                seg.push('@');
                seg.push_str(&attr.value);
            }
        }
        Ok(seg)
    };
    let path = |stack: &[(String, bool)], last: &str| -> String {
        let mut p = String::new();
        for (seg, _) in stack {
            p.push_str(seg);
            p.push('/');
        }
        p.push_str(last);
        p
    };
    loop {
        let event = reader.read_event()?;
        let at_start = std::mem::replace(&mut first, false);
        match event {
            Event::DocType(_) => {
                return err(
                    "DOCTYPE and declarations are not allowed (entities are never expanded)",
                )
            }
            Event::PI(_) => return err("processing instructions are not allowed"),
            Event::Decl(_) if at_start => {}
            Event::Decl(_) => return err("misplaced XML declaration"),
            Event::Comment(_) => {}
            Event::Start(e) => {
                if done {
                    return err("content after the root element");
                }
                if !in_root {
                    if name_of(&e)? != expected_root {
                        return Err(wrong_root());
                    }
                    check_attributes(&e)?;
                    in_root = true;
                    continue;
                }
                if stack.len() >= max_depth {
                    return err("the document is nested too deeply");
                }
                if let Some(parent) = stack.last_mut() {
                    parent.1 = true;
                }
                if !value.trim_matches([' ', '\t', '\r', '\n']).is_empty() {
                    return err("text mixed with elements");
                }
                value.clear();
                stack.push((segment(&e)?, false));
            }
            Event::Empty(e) => {
                if done {
                    return err("content after the root element");
                }
                if !in_root {
                    if name_of(&e)? != expected_root {
                        return Err(wrong_root());
                    }
                    check_attributes(&e)?;
                    done = true;
                    continue;
                }
                if let Some(parent) = stack.last_mut() {
                    parent.1 = true;
                }
                let seg = segment(&e)?;
                out.push((path(&stack, &seg), String::new()));
            }
            Event::End(_) => match stack.pop() {
                Some((seg, had_children)) => {
                    let text = std::mem::take(&mut value);
                    if !had_children {
                        out.push((path(&stack, &seg), text));
                    } else if !text.trim_matches([' ', '\t', '\r', '\n']).is_empty() {
                        return err("text mixed with elements");
                    }
                }
                None if in_root && !done => done = true,
                None => return err("unbalanced end tag"),
            },
            Event::Text(t) => {
                if stack.is_empty() {
                    if !t.trim_matches([' ', '\t', '\r', '\n']).is_empty() {
                        return err("text outside a child element");
                    }
                } else {
                    value.push_str(&t);
                }
            }
            Event::CData(c) if !stack.is_empty() => value.push_str(&c),
            Event::CData(_) => return err("text outside a child element"),
            Event::GeneralRef(r) if !stack.is_empty() => push_reference(&r, &mut value)?,
            Event::GeneralRef(_) => return err("text outside a child element"),
            Event::Eof => {
                return if done {
                    Ok(out)
                } else if in_root {
                    Err(XmlError(format!(
                        "document does not hold a complete <{expected_root}> element"
                    )))
                } else {
                    Err(wrong_root())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_with_escaping_and_drops_empty_children() {
        let xml = build_flat(
            "direct_trade_create_req",
            &[
                ("subject", "A&B <c> \"d\""),
                ("merchant_url", ""),
                ("total_fee", "0.01"),
            ],
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
            "<notify><!DOCTYPE x><a>1</a></notify>",
            "<notify><a>&x;</a></notify>",
            "<notify><a><b>1</b></a></notify>",
            "<other><a>1</a></other>",
            "<notify><a>1</a>",
            "<notify><a>1</b></notify>",
            "<notify>stray<a>1</a></notify>",
            "<notify><a>1</a></notify><notify/>",
            "<?php echo 1; ?><notify/>",
            "",
            "not xml at all",
            "<notify><a>&#xD800;</a></notify>",
            "<notify><a>&#0;</a></notify>",
            "<notify><a>&amp</a></notify>",
            "<notify><a x=1>1</a></notify>",
            "<notify><a>1</a",
            "<notify><![CDATA[x</notify>",
            // A field twice: the first would be read, whatever the second says.
            "<notify><total_fee>10.00</total_fee><total_fee>0.01</total_fee></notify>",
            "<notify><out_trade_no>a</out_trade_no><x/><out_trade_no/></notify>",
        ];
        for a in attacks {
            assert!(parse_flat(a, "notify").is_err(), "accepted: {a}");
        }
    }

    #[test]
    fn leaves_of_a_nested_document() {
        let xml = "<?xml version=\"1.0\" encoding=\"GBK\"?>\n<alipay>\n  <is_success>T</is_success>\n  <request><param name=\"partner\">2088</param><param name=\"out_trade_no\">1</param></request>\n  <response><trade><a>1</a><b/><c>x&amp;y</c></trade></response>\n  <sign>ab</sign>\n</alipay>";
        let leaves = parse_leaves(xml, "alipay", 3).unwrap();
        let l = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            leaves,
            vec![
                l("is_success", "T"),
                l("request/param@partner", "2088"),
                l("request/param@out_trade_no", "1"),
                l("response/trade/a", "1"),
                l("response/trade/b", ""),
                l("response/trade/c", "x&y"),
                l("sign", "ab"),
            ]
        );
        assert_eq!(parse_leaves("<alipay/>", "alipay", 3).unwrap(), vec![]);
        for bad in [
            "<!DOCTYPE a [<!ENTITY x \"y\">]><alipay><a>&x;</a></alipay>",
            "<alipay><a><b><c><d>1</d></c></b></a></alipay>",
            "<other><a>1</a></other>",
            "<alipay><a>1</a>",
            "<alipay><a>t<b>1</b></a></alipay>",
            "<alipay>stray</alipay>",
            "<alipay/><alipay/>",
            "<alipay><a>1</a></alipay><b/>",
            "",
        ] {
            assert!(parse_leaves(bad, "alipay", 3).is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn a_megabyte_field_is_fine() {
        let big = "x".repeat(1 << 20);
        let xml = format!("<notify><subject>{big}</subject></notify>");
        assert_eq!(
            parse_flat(&xml, "notify")
                .unwrap()
                .get("subject")
                .unwrap()
                .len(),
            1 << 20
        );
    }
}
