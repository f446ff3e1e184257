//! Reading Alipay's trade bill ([OPENAPI §7.8]): the host downloads the archive and passes its
//! files; each is a GBK CSV with `#` comment lines around a header and its rows. The header is
//! found by its content and columns are mapped by name, so the 25-column layout and older, shorter
//! ones read the same; values lose the `\t` Alipay appends and surrounding spaces. Files with no
//! trade header (the `(汇总)` summary) give no entries.

use crate::amount::Amount;
use crate::model::{BillEntry, BillEntryKind, BillFile, PluginError};

const TRADE_NO: &str = "支付宝交易号";
const OUT_TRADE_NO: &str = "商户订单号";
const KIND: &str = "业务类型";
const AMOUNT: &str = "订单金额（元）";
const FINISHED: &str = "完成时间";
const REQUEST_NO: &str = "退款批次号/请求号";
/// A bill line's longest: 25 columns, a product name of at most 256 characters among them,
/// stay far below it. A longer "line" is not a bill's, and decoding it whole could outgrow the
/// component's memory (a trap instead of an answer).
const MAX_LINE_BYTES: usize = 16 << 10;

/// A header cell's name, comparable: trimmed, `\t` gone, ASCII parentheses as Alipay's full-width.
fn name(cell: &str) -> String {
    clean(cell).replace('(', "（").replace(')', "）")
}

fn clean(cell: &str) -> &str {
    cell.trim_matches(|c: char| c == '\t' || c.is_whitespace())
}

/// One CSV line's cells (double quotes group a cell and `""` is a quote; Alipay's bills rarely
/// quote, a product name with a comma is).
fn cells(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cell)),
            c => cell.push(c),
        }
    }
    out.push(cell);
    out
}

/// Where each needed column is, from a header line; None when the line is not the trade header.
struct Columns {
    trade_no: usize,
    out_trade_no: usize,
    kind: usize,
    amount: usize,
    finished: usize,
    request_no: Option<usize>,
}

impl Columns {
    fn find(header: &[String]) -> Option<Columns> {
        let names: Vec<String> = header.iter().map(|c| name(c)).collect();
        let at = |n: &str| names.iter().position(|h| h == n);
        Some(Columns {
            trade_no: at(TRADE_NO)?,
            out_trade_no: at(OUT_TRADE_NO)?,
            kind: at(KIND)?,
            amount: at(AMOUNT)?,
            finished: at(FINISHED)?,
            request_no: at(REQUEST_NO),
        })
    }
}

/// Every payment and refund line of the bill's files, in file order. A trade line whose amount
/// is not a decimal, or that is shorter than its header, makes the bill malformed (naming the
/// file and line): a bill read wrongly must not look reconciled. So does a bill none of whose
/// files has the trade header (the summary file alone, or not a bill at all): read as "no
/// business that day", it would look reconciled too. A day without business still has the
/// header, with no line under it.
///
/// Memory: the component has 16 MiB (plugin.toml `[limits] memory_mib`) for the files, the
/// entries and the answer. Lines are decoded one at a time (a GBK trail byte is never `\n`),
/// never the whole file at once, and the entries are sized once per file.
pub fn parse(files: &[BillFile]) -> Result<Vec<BillEntry>, PluginError> {
    let mut entries = Vec::new();
    let mut any_header = false;
    let mut table: Option<crate::gbk::Table> = None;
    for file in files {
        let mut columns: Option<Columns> = None;
        entries.reserve(file.content.iter().filter(|b| **b == b'\n').count() + 1);
        for (i, bytes) in file.content.split(|b| *b == b'\n').enumerate() {
            if bytes.len() > MAX_LINE_BYTES {
                return Err(PluginError::Malformed(format!(
                    "bill file {} line {} is {} bytes long: a bill line is a few hundred (at most {MAX_LINE_BYTES} are read), so this is not an Alipay bill",
                    file.name,
                    i + 1,
                    bytes.len()
                )));
            }
            let decoded;
            let line: &str = match std::str::from_utf8(bytes) {
                Ok(ascii) if bytes.is_ascii() => ascii,
                _ => {
                    let table = table.get_or_insert_with(crate::gbk::Table::build);
                    decoded = table.decode(bytes).map_err(|e| {
                        PluginError::Malformed(format!(
                            "bill file {} line {}: not GBK text ({e})",
                            file.name,
                            i + 1
                        ))
                    })?;
                    &decoded
                }
            };
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let row = cells(line);
            let Some(c) = &columns else {
                columns = Columns::find(&row);
                any_header |= columns.is_some();
                continue;
            };
            let bad = |why: &str| {
                PluginError::Malformed(format!("bill file {} line {}: {why}", file.name, i + 1))
            };
            let cell = |at: usize| {
                row.get(at)
                    .map(|s| clean(s))
                    .ok_or_else(|| bad("too few columns"))
            };
            let kind = match cell(c.kind)? {
                "交易" => BillEntryKind::Payment,
                "退款" => BillEntryKind::Refund,
                _ => BillEntryKind::Other,
            };
            // A refund's line carries its amount negative; a payment's never does (one
            // shown negative is not read as a payment of that much).
            let raw_amount = cell(c.amount)?;
            let unsigned = match (kind, raw_amount.strip_prefix('-')) {
                (BillEntryKind::Payment, Some(_)) => {
                    return Err(bad(&format!(
                        "订单金额（元） {raw_amount:?} is negative on a payment (交易) line"
                    )))
                }
                (_, Some(rest)) => rest,
                (_, None) => raw_amount,
            };
            let amount = match (kind, Amount::parse(unsigned)) {
                (_, Ok(a)) => a.to_string(),
                // A line that is neither a payment nor a refund (a freeze, a fee, a transfer) is
                // only counted: its amount (0.00, or empty, on some) never fails the day's bill.
                (BillEntryKind::Other, Err(_)) => "0.00".to_owned(),
                (_, Err(e)) => return Err(bad(&format!("订单金额（元） {raw_amount:?} {e}"))),
            };
            entries.push(BillEntry {
                kind,
                out_trade_no: cell(c.out_trade_no)?.to_owned(),
                trade_no: cell(c.trade_no)?.to_owned(),
                amount,
                request_no: match (kind, c.request_no) {
                    (BillEntryKind::Refund, Some(at)) => cell(at)?.to_owned(),
                    _ => String::new(),
                },
                finished_at: cell(c.finished)?.to_owned(),
            });
        }
    }
    if !any_header {
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        return Err(PluginError::Malformed(format!(
            "the bill's files ({}) have no trade detail header ({TRADE_NO}, {OUT_TRADE_NO}, {KIND}, …): not an Alipay trade bill, or its detail file is missing",
            names.join(", ")
        )));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER_25: &str = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注";

    fn gbk(text: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = encoding_rs::GBK.encode(text);
        assert!(!unmappable);
        bytes.into_owned()
    }

    fn detail_25() -> String {
        [
            "#支付宝业务明细查询",
            "#账号：[20880000000000020156]",
            "#起始日期：[2024年05月20日 00:00:00]   终止日期：[2024年05月21日 00:00:00]",
            "#-----------------------------------------业务明细列表----------------------------------------",
            HEADER_25,
            "2024052022001400000000000001\t,ECS20240520000123\t,交易,测试商品 ECShop,2024-05-20 10:31:02,2024-05-20 10:31:05,,,,,tes***@example.com,88.88,88.88,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.53,0.00,",
            "2024052022001400000000000001\t,ECS20240520000123\t,退款,测试商品 ECShop,2024-05-20 10:31:02,2024-05-21 09:00:01,,,,,tes***@example.com,-10.00,-10.00,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,RF20240521001\t,0.06,0.00,",
            "#-----------------------------------------业务明细列表结束------------------------------------",
            "#交易合计：1笔，商家实收：88.88元，商家优惠：0.00元",
            "#退款合计：1笔，商家实收：-10.00元，商家优惠：0.00元",
            "#导出时间：[2024年05月21日 09:12:40]",
        ]
        .join("\r\n")
    }

    #[test]
    fn reads_the_25_column_layout_and_skips_the_summary() {
        let summary = "#支付宝业务汇总查询\r\n门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）\r\n,,1,1,78.88,78.88\r\n";
        let files = [
            BillFile {
                name: "20880000000000020156_20240520_业务明细.csv".into(),
                content: gbk(&detail_25()),
            },
            BillFile {
                name: "20880000000000020156_20240520_业务明细(汇总).csv".into(),
                content: gbk(summary),
            },
        ];
        let e = parse(&files).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].kind, BillEntryKind::Payment);
        assert_eq!(e[0].trade_no, "2024052022001400000000000001");
        assert_eq!(e[0].out_trade_no, "ECS20240520000123");
        assert_eq!(e[0].amount, "88.88");
        assert_eq!(e[0].request_no, "");
        assert_eq!(e[0].finished_at, "2024-05-20 10:31:05");
        assert_eq!(e[1].kind, BillEntryKind::Refund);
        assert_eq!(e[1].amount, "10.00", "a refund's amount is positive");
        assert_eq!(e[1].request_no, "RF20240521001");
    }

    /// An older layout with fewer columns (no voucher columns) and another column order: mapped
    /// by name, it reads the same.
    #[test]
    fn reads_a_shorter_older_layout_by_name() {
        let text = [
            "#支付宝业务明细查询",
            "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,退款批次号/请求号,服务费（元）,分润（元）,备注,券名称",
            "2016052021001004000000000001\t,SHOP1\t,交易,\"商品,大号\",2016-05-20 10:00:00,2016-05-20 10:00:09,,,,,a***@b.cn,0.10,0.10,0.00,0.00,0.00,0.00,,0.00,0.00,,",
            "2016052021001004000000000001\t,SHOP1\t,退款,\"商品,大号\",2016-05-20 10:00:00,2016-05-21 11:00:00,,,,,a***@b.cn,-0.03,-0.03,0.00,0.00,0.00,0.00,2016052101001\t,0.00,0.00,,",
            "2016052021001004000000000002\t,SHOP2\t,冻结,x,2016-05-20 10:00:00,2016-05-20 12:00:00,,,,,a***@b.cn,1.00,1.00,0.00,0.00,0.00,0.00,,0.00,0.00,,",
            // Lines only counted: an amount of 0.00, or none, never fails the day's bill.
            "2016052021001004000000000003\t,\t,收费,x,2016-05-20 10:00:00,2016-05-20 12:00:00,,,,,a***@b.cn,0.00,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,",
            "2016052021001004000000000004\t,\t,转账,x,2016-05-20 10:00:00,2016-05-20 12:00:00,,,,,a***@b.cn,,,,,,,,,,,",
        ]
        .join("\n");
        assert_eq!(text.lines().nth(1).unwrap().split(',').count(), 22);
        let e = parse(&[BillFile {
            name: "old.csv".into(),
            content: gbk(&text),
        }])
        .unwrap();
        assert_eq!(e.len(), 5);
        assert!(e[3..].iter().all(|x| x.kind == BillEntryKind::Other));
        assert_eq!(
            (e[0].kind, e[0].amount.as_str(), e[0].out_trade_no.as_str()),
            (BillEntryKind::Payment, "0.10", "SHOP1")
        );
        assert_eq!(
            (e[1].kind, e[1].amount.as_str(), e[1].request_no.as_str()),
            (BillEntryKind::Refund, "0.03", "2016052101001")
        );
        assert_eq!(e[2].kind, BillEntryKind::Other);
    }

    #[test]
    fn a_bad_line_is_named() {
        let text = format!("{HEADER_25}\nX,Y,交易,z,a,b,,,,,c,abc,0");
        match parse(&[BillFile {
            name: "b.csv".into(),
            content: gbk(&text),
        }]) {
            Err(PluginError::Malformed(m)) => assert!(m.contains("b.csv line 2"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&[BillFile {
                name: "c.csv".into(),
                content: vec![0xB0],
            }]),
            Err(PluginError::Malformed(_))
        ));
        // A payment shown negative is not a payment of that much; a refund's one minus is its
        // sign, a second is not.
        for (line, says) in [
            ("X,Y,交易,z,a,b,,,,,c,-88.88,0", "negative on a payment"),
            ("X,Y,退款,z,a,b,,,,,c,--88.88,0", "--88.88"),
        ] {
            match parse(&[BillFile {
                name: "d.csv".into(),
                content: gbk(&format!("{HEADER_25}\n{line}")),
            }]) {
                Err(PluginError::Malformed(m)) => {
                    assert!(m.contains("d.csv line 2") && m.contains(says), "{m}")
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    /// A megabyte without a line break is not a bill line: refused by its length, before it is
    /// decoded (whole, it could outgrow the component's memory and trap).
    #[test]
    fn a_line_longer_than_any_bill_line_is_malformed() {
        let mut content = gbk(&format!("{HEADER_25}\n"));
        content.extend(std::iter::repeat_n(0xB0, 1 << 20));
        match parse(&[BillFile {
            name: "e.csv".into(),
            content,
        }]) {
            Err(PluginError::Malformed(m)) => {
                assert!(m.contains("e.csv line 2 is 1048576 bytes long"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        // A long product name is still a line.
        let name = "商".repeat(256);
        let line = format!("X,Y,交易,{name},a,b,,,,,c,1.00,0");
        assert_eq!(
            parse(&[BillFile {
                name: "f.csv".into(),
                content: gbk(&format!("{HEADER_25}\n{line}")),
            }])
            .unwrap()
            .len(),
            1
        );
    }

    /// The summary file alone, a CSV of something else, or no file: never "no business that
    /// day". A detail file with its header and no line is one.
    #[test]
    fn a_bill_without_the_trade_header_is_malformed() {
        let summary = BillFile {
            name: "20160520_业务明细(汇总).csv".into(),
            content: gbk("#支付宝业务汇总查询\n门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）\n,,0,0,0.00"),
        };
        let other = BillFile {
            name: "x.csv".into(),
            content: gbk("a,b,c\n1,2,3"),
        };
        for files in [vec![summary.clone()], vec![other], Vec::new()] {
            match parse(&files) {
                Err(PluginError::Malformed(m)) => {
                    assert!(m.contains("no trade detail header"), "{m}")
                }
                got => panic!("{got:?}"),
            }
        }
        let quiet_day = BillFile {
            name: "20160520_业务明细.csv".into(),
            content: gbk(&format!(
                "#支付宝业务明细查询\n{HEADER_25}\n#业务明细列表结束"
            )),
        };
        assert_eq!(parse(&[quiet_day, summary]).unwrap(), Vec::new());
    }
}
