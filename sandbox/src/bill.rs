//! The open platform's trade bill, as the sandbox plays it ([OPENAPI §7.8]):
//!
//! * `alipay.data.dataservice.bill.downloadurl.query` (`bill_type=trade`, `bill_date`
//!   `yyyy-MM-dd`) answers `bill_download_url`, a sandbox URL, or `bill_file_code`
//!   `EMPTY_DATA_WITH_BILL_FILE` (with the URL of an empty bill) for a day without business.
//!   Unlike Alipay (T+1), the sandbox serves today's bill at once.
//! * `GET {base}/openapi/bill/download?token=…` — a zip (deflate) of two GBK CSVs in Alipay's
//!   layout: `<seller>0156_<yyyyMMdd>_业务明细.csv` (`#` lines around the 25-column header; one
//!   `交易` row per trade paid that Beijing day, one `退款` row per refund made that day, amounts
//!   negative, numbers suffixed with `\t`) and `…_业务明细(汇总).csv`.
//! * `POST {base}/openapi/bill-extra` — plants a row the sandbox's trades do not have (a test's
//!   mismatch): form fields `app_id`, `bill_date` (`yyyy-MM-dd`), `trade_no`, `out_trade_no`,
//!   `kind` (`交易` or `退款`, default `交易`), `amount` (yuan), `request_no` (refunds).

use crate::openapi::OpenApiApp;
use crate::web::{self, json, text, Body};
use crate::Sandbox;
use http::Response;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Mutex;

const HEADER: &str = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注";

/// One line of the detail file.
#[derive(Clone, Debug)]
pub struct BillRow {
    pub trade_no: String,
    pub out_trade_no: String,
    /// `交易` or `退款`.
    pub kind: String,
    pub subject: String,
    pub created: String,
    pub finished: String,
    /// Yuan, negative for a refund.
    pub amount: String,
    pub request_no: String,
}

/// Issued download tokens and planted rows.
#[derive(Default)]
pub struct Bills {
    /// token → (app_id, bill_date).
    tokens: Mutex<HashMap<String, (String, String)>>,
    /// (app_id, bill_date) → rows.
    extra: Mutex<HashMap<(String, String), Vec<BillRow>>>,
}

fn is_date(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// Fen of a yuan amount with at most two places (0 when it is not one).
fn fen_of(amount: &str) -> i64 {
    let (int, frac) = amount.split_once('.').unwrap_or((amount, ""));
    match (int.parse::<i64>(), format!("{frac:0<2}").parse::<i64>()) {
        (Ok(i), Ok(f)) if frac.len() <= 2 => i * 100 + f,
        _ => 0,
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn gbk(text: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(text).0.into_owned()
}

impl Sandbox {
    /// The rows of one app's day: its trades paid that day, its refunds made that day, then the
    /// planted ones.
    fn bill_rows(&self, app_id: &str, date: &str) -> Vec<BillRow> {
        let mut rows = Vec::new();
        let mut trades = self.openapi_trades();
        trades.retain(|t| t.app_id == app_id);
        trades.sort_by(|a, b| a.gmt_create.cmp(&b.gmt_create));
        for t in &trades {
            let trade_no = t.trade_no.clone().unwrap_or_default();
            if let Some(paid) = t.gmt_payment.as_deref().filter(|p| p.starts_with(date)) {
                rows.push(BillRow {
                    trade_no: trade_no.clone(),
                    out_trade_no: t.out_trade_no.clone(),
                    kind: "交易".into(),
                    subject: t.subject.clone(),
                    created: t.gmt_create.clone(),
                    finished: paid.to_owned(),
                    amount: yuan(t.total_fen),
                    request_no: String::new(),
                });
            }
            for r in t.refunds.iter().filter(|r| r.at.starts_with(date)) {
                rows.push(BillRow {
                    trade_no: trade_no.clone(),
                    out_trade_no: t.out_trade_no.clone(),
                    kind: "退款".into(),
                    subject: t.subject.clone(),
                    created: t.gmt_create.clone(),
                    finished: r.at.clone(),
                    amount: format!("-{}", yuan(r.amount_fen)),
                    request_no: r.out_request_no.clone(),
                });
            }
        }
        if let Some(extra) = self
            .bills
            .extra
            .lock()
            .unwrap()
            .get(&(app_id.to_owned(), date.to_owned()))
        {
            rows.extend(extra.iter().cloned());
        }
        rows
    }

    /// `alipay.data.dataservice.bill.downloadurl.query`: the node to sign, or an error node.
    pub(crate) fn bill_url_node(
        &self,
        app: &OpenApiApp,
        bill_type: &str,
        bill_date: &str,
    ) -> serde_json::Value {
        if bill_type != "trade" || !is_date(bill_date) {
            return serde_json::json!({
                "code": "40004", "msg": "Business Failed",
                "sub_code": "isp.bill_not_exist", "sub_msg": "账单不存在 (bill_type trade, bill_date yyyy-MM-dd)",
            });
        }
        let token = self.new_token("bill", self.now());
        self.bills
            .tokens
            .lock()
            .unwrap()
            .insert(token.clone(), (app.app_id.clone(), bill_date.to_owned()));
        let url = format!("{}/openapi/bill/download?token={token}", self.public_base);
        let mut node = serde_json::json!({
            "code": "10000", "msg": "Success", "bill_download_url": url,
        });
        if self.bill_rows(&app.app_id, bill_date).is_empty() {
            node["bill_file_code"] = "EMPTY_DATA_WITH_BILL_FILE".into();
        }
        node
    }

    /// `GET {base}/openapi/bill/download?token=…`: the zip.
    pub(crate) fn bill_download(&self, query: &[(String, String)]) -> Response<Body> {
        let token = query
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let Some((app_id, date)) = self.bills.tokens.lock().unwrap().get(token).cloned() else {
            return text(404, "bill link unknown or expired");
        };
        let seller = self
            .openapi_seller(&app_id)
            .unwrap_or_else(|| "2088000000000000".into());
        let rows = self.bill_rows(&app_id, &date);
        let compact = date.replace('-', "");
        let now = web::alipay_time(web::unix_now() + 8 * 3600);
        let mut detail = vec![
            "#支付宝业务明细查询".to_owned(),
            format!("#账号：[{seller}0156]"),
            format!("#起始日期：[{date} 00:00:00]   终止日期：[{date} 23:59:59]"),
            "#-----------------------------------------业务明细列表----------------------------------------".into(),
            HEADER.into(),
        ];
        let (mut pay_n, mut pay_fen, mut refund_n, mut refund_fen) = (0, 0i64, 0, 0i64);
        for r in &rows {
            let fen = fen_of(r.amount.trim_start_matches('-'));
            if r.kind == "退款" {
                refund_n += 1;
                refund_fen += fen;
            } else {
                pay_n += 1;
                pay_fen += fen;
            }
            let cells = [
                format!("{}\t", r.trade_no),
                format!("{}\t", r.out_trade_no),
                r.kind.clone(),
                csv_cell(&r.subject),
                r.created.clone(),
                r.finished.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                "buy***@sandbox.example".into(),
                r.amount.clone(),
                r.amount.clone(),
                "0.00".into(),
                "0.00".into(),
                "0.00".into(),
                "0.00".into(),
                "0.00".into(),
                String::new(),
                "0.00".into(),
                "0.00".into(),
                if r.request_no.is_empty() {
                    String::new()
                } else {
                    format!("{}\t", r.request_no)
                },
                "0.00".into(),
                "0.00".into(),
                String::new(),
            ];
            detail.push(cells.join(","));
        }
        let money = |fen: i64| {
            format!(
                "{}{}.{:02}",
                if fen < 0 { "-" } else { "" },
                fen.abs() / 100,
                fen.abs() % 100
            )
        };
        detail.push("#-----------------------------------------业务明细列表结束------------------------------------".into());
        detail.push(format!(
            "#交易合计：{pay_n}笔，商家实收：{}元，商家优惠：0.00元",
            money(pay_fen)
        ));
        detail.push(format!(
            "#退款合计：{refund_n}笔，商家实收：{}元，商家优惠：0.00元",
            money(-refund_fen)
        ));
        detail.push(format!("#导出时间：[{now}]"));
        let summary = [
            "#支付宝业务汇总查询".to_owned(),
            format!("#账号：[{seller}0156]"),
            format!("#起始日期：[{date} 00:00:00]   终止日期：[{date} 23:59:59]"),
            "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,服务费（元）".into(),
            format!(
                ",,{pay_n},{refund_n},{},{},0.00",
                money(pay_fen - refund_fen),
                money(pay_fen - refund_fen)
            ),
            format!("#导出时间：[{now}]"),
        ];
        let base = format!("{seller}0156_{compact}");
        let files = [
            (format!("{base}_业务明细.csv"), detail.join("\r\n") + "\r\n"),
            (
                format!("{base}_业务明细(汇总).csv"),
                summary.join("\r\n") + "\r\n",
            ),
        ];
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, content) in &files {
            if zip.start_file(name.as_str(), options).is_err()
                || zip.write_all(&gbk(content)).is_err()
            {
                return text(500, "cannot write the bill archive");
            }
        }
        match zip.finish() {
            Ok(cursor) => web::xml("application/octet-stream", cursor.into_inner()),
            Err(_) => text(500, "cannot write the bill archive"),
        }
    }

    /// `POST {base}/openapi/bill-extra`: plants a row in an app's bill of a day.
    pub(crate) fn bill_extra(&self, form: &[(String, String)]) -> Response<Body> {
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        let (app_id, date) = (get("app_id"), get("bill_date"));
        if app_id.is_empty() || !is_date(&date) {
            return text(400, "app_id and bill_date (yyyy-MM-dd) are required");
        }
        let kind = Some(get("kind"))
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "交易".into());
        let amount = get("amount");
        // 冻结 (a freeze) stands for the bill's lines that are neither payments nor refunds.
        if !matches!(kind.as_str(), "交易" | "退款" | "冻结") || fen_of(&amount) <= 0 {
            return text(
                400,
                "kind must be 交易, 退款 or 冻结, amount a positive yuan amount",
            );
        }
        let time = format!("{date} 12:00:00");
        let row = BillRow {
            trade_no: get("trade_no"),
            out_trade_no: get("out_trade_no"),
            amount: if kind == "退款" {
                format!("-{amount}")
            } else {
                amount
            },
            kind,
            subject: "planted".into(),
            created: time.clone(),
            finished: time,
            request_no: get("request_no"),
        };
        self.bills
            .extra
            .lock()
            .unwrap()
            .entry((app_id, date))
            .or_default()
            .push(row.clone());
        json(
            200,
            &serde_json::json!({"planted": {"trade_no": row.trade_no, "out_trade_no": row.out_trade_no, "kind": row.kind, "amount": row.amount}}),
        )
    }
}
