//! Building signed OpenAPI requests ([OPENAPI §2]–[OPENAPI §4]): the common parameters,
//! `biz_content` serialised once (the bytes signed are the bytes sent), the signature, and the
//! three ways a request leaves: a GET URL, an auto-submitting POST form (common parameters in
//! the action, `biz_content` as a field, [OPENAPI §4.4] layout a), and the app SDK's order string ([OPENAPI §4.5]).

use super::settings::OpenApiSettings;
use super::sign::{request_sign_content, sign};
use crate::model::PluginError;

/// One parameter of a request, in the order it was added.
pub type Params = Vec<(String, String)>;

/// `yyyy-MM-dd HH:mm:ss` in Beijing time (UTC+8, no daylight saving) for a Unix time, whatever
/// the host's zone ([OPENAPI §2] R2.1: the gateway refuses a skewed `timestamp`).
pub fn beijing_time(unix_seconds: i64) -> String {
    let t = unix_seconds + 8 * 3600;
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A JSON object written once, in the order fields are added, with serde_json's string
/// escaping (UTF-8 kept, `/` not escaped).
#[derive(Default)]
pub struct BizContent(String);

impl BizContent {
    pub fn field(mut self, key: &str, value: &str) -> Self {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        self.0
            .push_str(&serde_json::to_string(key).expect("a string serialises"));
        self.0.push(':');
        self.0
            .push_str(&serde_json::to_string(value).expect("a string serialises"));
        self
    }

    pub fn maybe(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) if !v.is_empty() => self.field(key, v),
            _ => self,
        }
    }

    pub fn finish(mut self) -> String {
        if self.0.is_empty() {
            self.0.push('{');
        }
        self.0.push('}');
        self.0
    }
}

/// The common parameters of [OPENAPI §2] for `method` (never an empty one: R2.3), with the certificate
/// serial numbers in certificate mode.
pub fn common_params(
    settings: &OpenApiSettings,
    method: &str,
    timestamp: &str,
    notify_url: Option<&str>,
    return_url: Option<&str>,
) -> Params {
    let mut p: Params = vec![
        ("app_id".into(), settings.app_id.clone()),
        ("method".into(), method.into()),
        ("format".into(), "JSON".into()),
        ("charset".into(), "utf-8".into()),
        ("sign_type".into(), settings.sign_type.as_str().into()),
        ("timestamp".into(), timestamp.into()),
        ("version".into(), "1.0".into()),
    ];
    for (k, v) in [("notify_url", notify_url), ("return_url", return_url)] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            p.push((k.into(), v.into()));
        }
    }
    if let Some(c) = &settings.cert_mode {
        p.push(("app_cert_sn".into(), c.app_cert_sn.clone()));
        p.push(("alipay_root_cert_sn".into(), c.alipay_root_cert_sn.clone()));
    }
    p
}

/// Adds `biz_content` and `sign` ([OPENAPI §3.1]) to a request's parameters.
pub fn signed(
    settings: &OpenApiSettings,
    mut params: Params,
    biz_content: String,
) -> Result<Params, PluginError> {
    params.push(("biz_content".into(), biz_content));
    let content = request_sign_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let signature = sign(
        content.as_bytes(),
        &settings.private_key,
        settings.sign_type,
    )
    .map_err(|e| {
        PluginError::InvalidSettings(vec![crate::model::FieldError::new(
            "app_private_key",
            e.to_string(),
        )])
    })?;
    params.push(("sign".into(), signature));
    Ok(params)
}

fn urlencode(pairs: impl IntoIterator<Item = (String, String)>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(&k, &v);
    }
    s.finish()
}

fn with_query(gateway: &str, query: &str) -> String {
    format!("{gateway}?{query}")
}

/// The GET URL: the gateway with every parameter, `sign` included, URL-encoded ([OPENAPI §4.4]).
pub fn get_url(gateway: &str, params: &Params) -> String {
    with_query(gateway, &urlencode(params.iter().cloned()))
}

/// The POST form ([OPENAPI §4.4] layout a): every parameter but `biz_content` in the action's query (so
/// `charset` reaches the gateway before it reads the body), `biz_content` as the one field.
pub fn post_form(gateway: &str, params: &Params) -> (String, Vec<(String, String)>) {
    let (body, query): (Params, Params) = params
        .iter()
        .cloned()
        .partition(|(k, _)| k == "biz_content");
    (with_query(gateway, &urlencode(query)), body)
}

/// The app SDK's order string ([OPENAPI §4.5]): every parameter, `sign` included, sorted by key, values
/// URL-encoded.
pub fn order_string(params: &Params) -> String {
    let mut sorted = params.clone();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    urlencode(sorted)
}

/// A server-to-server call ([OPENAPI §7.1]): POST to the gateway, common parameters and `sign` in the
/// URL's query, `biz_content` in a form body.
pub fn server_call(gateway: &str, params: &Params) -> (String, Vec<u8>) {
    let (action, body) = post_form(gateway, params);
    (action, urlencode(body).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beijing_time_whatever_the_zone() {
        // 2024-05-20 02:30:00 UTC is 10:30:00 in Beijing (the vectors' time).
        assert_eq!(beijing_time(1_716_172_200), "2024-05-20 10:30:00");
        // Across midnight, a month end and a leap day.
        assert_eq!(beijing_time(1_709_222_399), "2024-02-29 23:59:59");
        assert_eq!(beijing_time(1_709_225_999), "2024-03-01 00:59:59");
        assert_eq!(beijing_time(1_709_136_000), "2024-02-29 00:00:00");
        assert_eq!(beijing_time(0), "1970-01-01 08:00:00");
        assert_eq!(beijing_time(-8 * 3600 - 1), "1969-12-31 23:59:59");
    }

    #[test]
    fn biz_content_is_written_once_in_order() {
        let s = BizContent::default()
            .field("subject", "测试 \"商品\" a/b")
            .maybe("quit_url", None)
            .maybe("body", Some(""))
            .field("total_amount", "1.00")
            .finish();
        assert_eq!(
            s,
            r#"{"subject":"测试 \"商品\" a/b","total_amount":"1.00"}"#
        );
        assert_eq!(BizContent::default().finish(), "{}");
    }
}
