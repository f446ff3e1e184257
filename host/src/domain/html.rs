//! HTML the host writes for others to show: escaping, and the auto-submitting form that sends a
//! buyer to the provider's cashier (`pay_form`).

/// HTML-escapes text for element bodies and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A form that submits itself: `fields` sent with `method` (`get` or `post`) to `action`, for a
/// shop to print into its order page. A provider whose request is too long for a URL (Alipay's
/// open platform with a long `biz_content`) gets a POST; without JavaScript the buyer presses the
/// button.
pub fn auto_submit_form(method: &str, action: &str, fields: &[(String, String)]) -> String {
    let mut out = format!(
        "<form id=\"payhost-pay\" method=\"{}\" action=\"{}\" accept-charset=\"utf-8\">",
        escape(method),
        escape(action)
    );
    for (k, v) in fields {
        out.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(k),
            escape(v)
        ));
    }
    out.push_str(
        "<noscript><button type=\"submit\">继续付款 Continue to pay</button></noscript></form>",
    );
    out.push_str("<script>document.getElementById('payhost-pay').submit();</script>");
    out
}

/// The same page as a GET form, from a URL with a query: its parameters become the fields.
pub fn form_from_url(url: &str) -> String {
    let (action, query) = url.split_once('?').unwrap_or((url, ""));
    let fields: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    auto_submit_form("get", action, &fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_action_are_escaped() {
        let f = auto_submit_form(
            "post",
            "https://gw.example/gateway.do?a=1&b=\"x\"",
            &[("biz_content".into(), "{\"subject\":\"<茶>\"}".into())],
        );
        assert!(
            f.contains("action=\"https://gw.example/gateway.do?a=1&amp;b=&quot;x&quot;\""),
            "{f}"
        );
        assert!(
            f.contains("value=\"{&quot;subject&quot;:&quot;&lt;茶&gt;&quot;}\""),
            "{f}"
        );
        assert!(f.contains("method=\"post\""));
        assert!(!f.contains("<茶>"));
    }

    #[test]
    fn a_url_becomes_the_same_get_form() {
        let f = form_from_url("https://gw.example/pay?x=a%20b&y=%E8%8C%B6");
        assert!(f.contains("action=\"https://gw.example/pay\""), "{f}");
        assert!(f.contains("name=\"x\" value=\"a b\""), "{f}");
        assert!(f.contains("name=\"y\" value=\"茶\""), "{f}");
        assert!(f.contains("method=\"get\""));
    }
}
