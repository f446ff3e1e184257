//! The small, flat XML documents of this protocol: `req_data`, `res_data`, `res_error`,
//! `notify_data`.
//!
//! Each is a root element holding simple text elements. The reader is strict on purpose: any
//! DOCTYPE is refused (so no entity can be declared, let alone expanded), only the five predefined
//! entities and character references are decoded, processing instructions other than the XML
//! declaration are refused, and nesting below the root's children is refused.
//!
//! It is written out rather than built on quick-xml (which the host and its sandbox use) because
//! the component must fit in 256 KiB; the tests check it against quick-xml.

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

/// Escapes text for an element body.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
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

struct Reader<'a> {
    s: &'a str,
    i: usize,
}

enum Tag<'a> {
    Start(&'a str),
    Empty(&'a str),
    End(&'a str),
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.i += rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
    }

    /// Skips whitespace and comments; refuses DOCTYPE and processing instructions.
    fn skip_misc(&mut self) -> Result<(), XmlError> {
        loop {
            self.skip_ws();
            let rest = self.rest();
            if let Some(body) = rest.strip_prefix("<!--") {
                let end = body
                    .find("-->")
                    .ok_or(XmlError("unterminated comment".into()))?;
                self.i += 4 + end + 3;
            } else if rest.starts_with("<!") {
                return err(
                    "DOCTYPE and declarations are not allowed (entities are never expanded)",
                );
            } else if rest.starts_with("<?") {
                return err("processing instructions are not allowed");
            } else {
                return Ok(());
            }
        }
    }

    fn name(&mut self) -> Result<&'a str, XmlError> {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
            .unwrap_or(rest.len());
        if len == 0 {
            return err("expected an element name");
        }
        self.i += len;
        Ok(&rest[..len])
    }

    /// Reads a tag at `<`; attributes are read and ignored.
    fn tag(&mut self) -> Result<Tag<'a>, XmlError> {
        if !self.rest().starts_with('<') {
            return err("expected a tag");
        }
        self.i += 1;
        let end_tag = self.rest().starts_with('/');
        if end_tag {
            self.i += 1;
        }
        let name = self.name()?;
        loop {
            self.skip_ws();
            let rest = self.rest();
            if rest.starts_with('>') {
                self.i += 1;
                return Ok(if end_tag {
                    Tag::End(name)
                } else {
                    Tag::Start(name)
                });
            }
            if rest.starts_with("/>") && !end_tag {
                self.i += 2;
                return Ok(Tag::Empty(name));
            }
            if end_tag {
                return err("malformed end tag");
            }
            // name="value" or name='value'
            self.name()?;
            self.skip_ws();
            if !self.rest().starts_with('=') {
                return err("malformed attribute");
            }
            self.i += 1;
            self.skip_ws();
            let quote = self
                .rest()
                .chars()
                .next()
                .filter(|c| *c == '"' || *c == '\'');
            let quote = quote.ok_or(XmlError("attribute value must be quoted".into()))?;
            let close = self.rest()[1..]
                .find(quote)
                .ok_or(XmlError("unterminated attribute".into()))?;
            if self.rest()[1..1 + close].contains('<') {
                return err("'<' in an attribute value");
            }
            self.i += close + 2;
        }
    }

    /// Text up to the next `<` (CDATA sections included), with references decoded.
    fn text(&mut self, out: &mut String) -> Result<(), XmlError> {
        loop {
            let rest = self.rest();
            if let Some(body) = rest.strip_prefix("<![CDATA[") {
                let end = body
                    .find("]]>")
                    .ok_or(XmlError("unterminated CDATA".into()))?;
                out.push_str(&body[..end]);
                self.i += 9 + end + 3;
                continue;
            }
            let stop = rest.find(['<', '&']).unwrap_or(rest.len());
            out.push_str(&rest[..stop]);
            self.i += stop;
            if !self.rest().starts_with('&') {
                return Ok(());
            }
            let rest = self.rest();
            let end = rest
                .find(';')
                .filter(|&e| e <= 12)
                .ok_or(XmlError("unterminated reference".into()))?;
            let name = &rest[1..end];
            let c = match name {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                _ => {
                    let code = if let Some(hex) = name.strip_prefix("#x") {
                        u32::from_str_radix(hex, 16).ok()
                    } else if let Some(dec) = name.strip_prefix('#') {
                        dec.parse().ok()
                    } else {
                        return Err(XmlError(format!(
                            "unknown entity &{name}; (entities are never expanded)"
                        )));
                    };
                    code.and_then(char::from_u32)
                        .filter(|c| *c != '\0')
                        .ok_or(XmlError("bad character reference".into()))?
                }
            };
            out.push(c);
            self.i += end + 1;
        }
    }
}

/// Parses a flat document whose root element must be `expected_root`.
pub fn parse_flat(xml: &str, expected_root: &str) -> Result<FlatElements, XmlError> {
    let mut r = Reader {
        s: xml.strip_prefix('\u{feff}').unwrap_or(xml),
        i: 0,
    };
    if r.rest().starts_with("<?xml") {
        let end = r
            .rest()
            .find("?>")
            .ok_or(XmlError("unterminated XML declaration".into()))?;
        r.i += end + 2;
    }
    r.skip_misc()?;
    let mut out = FlatElements::default();
    match r.tag()? {
        Tag::Start(name) if name == expected_root => out.root = name.to_owned(),
        Tag::Empty(name) if name == expected_root => {
            out.root = name.to_owned();
            r.skip_misc()?;
            return if r.rest().is_empty() {
                Ok(out)
            } else {
                err("content after the root element")
            };
        }
        _ => return Err(XmlError(format!("expected root <{expected_root}>"))),
    }
    loop {
        let mut between = String::new();
        r.text(&mut between)?;
        if !between.trim().is_empty() {
            return err("text outside a child element");
        }
        if r.rest().starts_with("<!--") || r.rest().starts_with("<!") || r.rest().starts_with("<?")
        {
            r.skip_misc()?;
            continue;
        }
        if r.rest().is_empty() {
            return Err(XmlError(format!(
                "document does not hold a complete <{expected_root}> element"
            )));
        }
        match r.tag()? {
            Tag::End(name) if name == out.root => break,
            Tag::End(_) => return err("unbalanced end tag"),
            Tag::Empty(name) => out.children.push((name.to_owned(), String::new())),
            Tag::Start(name) => {
                let mut value = String::new();
                r.text(&mut value)?;
                match r.tag()? {
                    Tag::End(end) if end == name => out.children.push((name.to_owned(), value)),
                    Tag::End(_) => return err("unbalanced end tag"),
                    _ => {
                        return Err(XmlError(format!(
                            "unexpected nested element inside <{name}>"
                        )))
                    }
                }
            }
        }
    }
    r.skip_misc()?;
    if !r.rest().is_empty() {
        return err("content after the root element");
    }
    Ok(out)
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

    /// The same children as quick-xml reads, on well-formed flat documents.
    #[test]
    fn agrees_with_quick_xml() {
        use quick_xml::events::Event;
        let docs = [
            "<notify><a>1</a><b>x&amp;y &lt;z&gt; &#20013;</b><c></c></notify>",
            "<?xml version=\"1.0\"?>\n<notify>\n  <a>1</a>\n  <!-- note -->\n  <b attr=\"v\">two words</b>\n</notify>\n",
            "<notify><subject>测试商品 &quot;q&quot; &apos;s&apos;</subject></notify>",
        ];
        for doc in docs {
            let ours = parse_flat(doc, "notify").unwrap().children;
            let mut reader = quick_xml::Reader::from_str(doc);
            let mut theirs = Vec::new();
            let mut depth = 0;
            let mut current = None;
            loop {
                match reader.read_event().unwrap() {
                    Event::Start(e) => {
                        depth += 1;
                        if depth == 2 {
                            current = Some((e.name().into_inner().to_owned(), String::new()));
                        }
                    }
                    Event::End(_) => {
                        if depth == 2 {
                            theirs.push(current.take().unwrap());
                        }
                        depth -= 1;
                    }
                    Event::Text(t) if depth == 2 => current.as_mut().unwrap().1.push_str(AsRef::<
                        str,
                    >::as_ref(
                        &t
                    )),
                    Event::GeneralRef(r) if depth == 2 => {
                        let c = match r.resolve_char_ref().unwrap() {
                            Some(c) => c.to_string(),
                            None => quick_xml::escape::resolve_predefined_entity(
                                AsRef::<str>::as_ref(&r),
                            )
                            .unwrap()
                            .to_owned(),
                        };
                        current.as_mut().unwrap().1.push_str(&c);
                    }
                    Event::Eof => break,
                    _ => {}
                }
            }
            assert_eq!(ours, theirs, "{doc}");
        }
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
        ];
        for a in attacks {
            assert!(parse_flat(a, "notify").is_err(), "accepted: {a}");
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
