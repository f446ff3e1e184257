//! Small answers and page pieces the sandbox and the demo shop serve: plain text, HTML, JSON,
//! redirects, HTML escaping, the shop's page shell, and Alipay's `yyyy-MM-dd HH:mm:ss` times.

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full, Limited};
use std::time::Duration;

/// Every answer of the sandbox and the shop.
pub type Body = Full<Bytes>;

pub fn text(status: u16, body: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.into())))
        .expect("valid response")
}

/// How long a request body may take to arrive. A client that stops sending halfway is answered
/// 408 instead of holding its connection and task open for as long as it likes.
#[cfg(not(test))]
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// The unit tests wait for the deadline in real time: one second keeps them short, and needs no
/// paused clock (tokio's `test-util`, which would give the tests a tokio, and so a payhost, of
/// their own to compile).
#[cfg(test)]
pub const BODY_DEADLINE: Duration = Duration::from_secs(1);

/// Reads a request body of at most `limit` bytes within [`BODY_DEADLINE`]; otherwise the answer
/// to send instead (413 too large, 408 too slow, 400 broken off).
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, Response<Body>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match tokio::time::timeout(BODY_DEADLINE, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(text(
            413,
            format!("the request body is larger than {limit} bytes"),
        )),
        Ok(Err(_)) => Err(text(400, "the request body was broken off")),
        Err(_) => Err(text(
            408,
            format!(
                "the request body did not arrive within {} s",
                BODY_DEADLINE.as_secs()
            ),
        )),
    }
}

pub fn html(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("x-frame-options", "DENY")
        .header(
            "content-security-policy",
            "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; form-action 'self' http: https:",
        )
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

pub fn json(status: u16, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("valid response")
}

pub fn xml(content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("valid response")
}

pub fn redirect(location: &str) -> Response<Body> {
    Response::builder()
        .status(302)
        .header("location", location)
        .body(Full::new(Bytes::new()))
        .expect("valid response")
}

/// A query's pairs, in order. Alipay reads a query that declares `_input_charset=GBK` as GBK
/// ([WAP §9]: the pay-channel query): its values' bytes are decoded from GBK then; any other
/// query is UTF-8.
pub fn query_pairs(raw: &[u8]) -> Vec<(String, String)> {
    let utf8: Vec<(String, String)> = form_urlencoded::parse(raw).into_owned().collect();
    let gbk = utf8
        .iter()
        .any(|(k, v)| k == "_input_charset" && v.eq_ignore_ascii_case("gbk"));
    if !gbk {
        return utf8;
    }
    let decode = |part: &[u8]| -> String {
        let plus: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        let bytes: Vec<u8> = percent_encoding::percent_decode(&plus).collect();
        encoding_rs::GBK
            .decode_without_bom_handling(&bytes)
            .0
            .into_owned()
    };
    raw.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut kv = p.splitn(2, |&b| b == b'=');
            let k = decode(kv.next().unwrap_or_default());
            let v = decode(kv.next().unwrap_or_default());
            (k, v)
        })
        .collect()
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
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

const SHOP_STYLE: &str = "body{font-family:-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;margin:0;background:#f4f6f8;color:#222}\
header{background:#1677ff;color:#fff;padding:12px 20px;display:flex;justify-content:space-between;align-items:center}\
header a{color:#fff}main{max-width:960px;margin:0 auto;padding:16px}\
.card{background:#fff;border-radius:8px;padding:16px 20px;margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}\
label{display:block;margin:10px 0 4px;font-weight:600}select{width:100%;box-sizing:border-box;padding:8px;border:1px solid #ccd;border-radius:4px;font-size:15px}\
button{background:#1677ff;color:#fff;border:0;border-radius:4px;padding:9px 16px;font-size:15px;margin:12px 8px 0 0;cursor:pointer}\
button.secondary{background:#fff;color:#1677ff;border:1px solid #1677ff}\
.ok{border-left:4px solid #2a2}.err{border-left:4px solid #d33}\
table{width:100%;border-collapse:collapse;font-size:13px}td,th{border-bottom:1px solid #eee;padding:6px;text-align:left}\
.status-TRADE_SUCCESS,.status-TRADE_FINISHED{color:#2a2;font-weight:600}.status-TRADE_CLOSED{color:#999}";

/// The demo shop's page: a phone-friendly shell around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{SHOP_STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    )
}

/// `yyyy-MM-dd HH:mm:ss` (UTC) of Unix seconds, as Alipay writes its times.
pub fn alipay_time(unix: u64) -> String {
    let (y, m, d) = civil_date(unix / 86_400);
    let s = unix % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3_600,
        s / 60 % 60,
        s % 60
    )
}

/// Year, month and day of a day count since 1970-01-01 (proleptic Gregorian calendar): shift the
/// year to start in March so the leap day comes last, then count 400-year cycles.
fn civil_date(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468; // days from 0000-03-01
    let cycle = shifted / 146_097;
    let day_of_cycle = shifted % 146_097;
    let year_of_cycle = (day_of_cycle - day_of_cycle / 1_460 + day_of_cycle / 36_524
        - day_of_cycle / 146_096)
        / 365;
    let day_of_year =
        day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_cycle + cycle * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alipay_times() {
        assert_eq!(alipay_time(0), "1970-01-01 00:00:00");
        assert_eq!(alipay_time(1_700_000_000), "2023-11-14 22:13:20");
        // A leap day and the day after.
        assert_eq!(alipay_time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(alipay_time(951_868_799), "2000-02-29 23:59:59");
        assert_eq!(alipay_time(951_868_800), "2000-03-01 00:00:00");
        assert_eq!(alipay_time(4_107_542_400), "2100-03-01 00:00:00");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_gbk_query_is_read_as_gbk() {
        let gbk = query_pairs(b"_input_charset=GBK&out_user=%D3%C3%BB%A7%D2%BB+1&partner=2088");
        assert_eq!(gbk[1], ("out_user".to_owned(), "用户一 1".to_owned()));
        let utf8 = query_pairs("out_user=%E7%94%A8%E6%88%B7%E4%B8%80".as_bytes());
        assert_eq!(utf8[0].1, "用户一");
    }
}
