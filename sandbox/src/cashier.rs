//! The sandbox's cashier (收银台), in Chinese like the real one: merchant, subject, amount, the
//! buyer's account, 确认付款 and 取消. The phone cashier for WAP trades, the desktop one (即时到账)
//! for PC trades.

use crate::web::esc;
use crate::Trade;

const STYLE: &str = "body{margin:0;font-family:-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;background:#f5f5f5;color:#333}\
.bar{background:#1677ff;color:#fff;padding:12px;text-align:center;font-size:17px}\
.box{background:#fff;margin:12px;border-radius:8px;padding:14px}.row{display:flex;justify-content:space-between;padding:8px 0;border-bottom:1px solid #f0f0f0}\
.amount{font-size:30px;color:#ff6a00;text-align:center;padding:12px 0}label{display:block;margin:10px 0 4px;color:#666}\
input{width:100%;box-sizing:border-box;padding:10px;border:1px solid #ddd;border-radius:4px;font-size:16px}\
button{width:100%;padding:12px;border:0;border-radius:4px;font-size:17px;margin-top:12px}.pay{background:#1677ff;color:#fff}.cancel{background:#fff;color:#666;border:1px solid #ddd}\
.note{color:#999;font-size:12px;text-align:center;margin:12px}\
.row>span:first-child{flex:none}.row>span+span{text-align:right;overflow-wrap:anywhere;margin-left:12px}.error{color:#d4380d;margin:8px 0}h2{font-size:16px;margin:0 0 6px}";

fn shell(title: &str, body: &str) -> String {
    shell_for(false, title, body)
}

fn shell_for(pc: bool, title: &str, body: &str) -> String {
    let bar = if pc {
        "支付宝 · 即时到账收银台 (沙箱)"
    } else {
        "支付宝 · 手机收银台 (沙箱)"
    };
    framed(bar, title, body)
}

/// An Alipay page of the sandbox: the blue bar naming the page, `body`, the sandbox's note.
pub(crate) fn framed(bar: &str, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><div class=\"bar\" id=\"cashier-kind\">{}</div>{body}\
         <div class=\"note\">这是 payhost 沙箱，不会产生真实扣款。Sandbox: no real money moves.</div></body></html>",
        esc(title),
        esc(bar)
    )
}

pub fn page(public_base: &str, t: &Trade) -> String {
    if t.status != "WAIT_BUYER_PAY" {
        return closed_page(t);
    }
    let base = esc(public_base);
    shell_for(
        t.pc,
        "确认付款",
        &format!(
            "<div class=\"box\"><div class=\"amount\" id=\"amount\">￥{fee}</div>\
             <div class=\"row\"><span>商户</span><span id=\"merchant\">{seller}</span></div>\
             <div class=\"row\"><span>商品名称</span><span id=\"subject\">{subject}</span></div>\
             <div class=\"row\"><span>订单号</span><span>{no}</span></div></div>\
             <div class=\"box\"><form method=\"post\" action=\"{base}/cashier/pay\">\
             <input type=\"hidden\" name=\"token\" value=\"{token}\">\
             <label for=\"buyer\">支付宝账户名 (手机号或邮箱)</label><input id=\"buyer\" name=\"buyer\" value=\"buyer@sandbox.example\">\
             <label for=\"password\">支付密码</label><input id=\"password\" name=\"password\" type=\"password\" value=\"sandbox\">\
             <button class=\"pay\" type=\"submit\" id=\"pay\">确认付款</button></form>\
             <form method=\"post\" action=\"{base}/cashier/cancel\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
             <button class=\"cancel\" type=\"submit\" id=\"cancel\">取消</button></form></div>",
            fee = esc(&t.total_fee),
            seller = esc(&t.seller),
            subject = esc(&t.subject),
            no = esc(&t.out_trade_no),
            token = esc(&t.token),
        ),
    )
}

pub fn closed_page(t: &Trade) -> String {
    let what = if t.status == "TRADE_CLOSED" {
        "交易已关闭 (已超过付款时限)"
    } else {
        "该交易已付款"
    };
    shell(
        what,
        &format!(
            "<div class=\"box\" id=\"closed\"><p>{}</p><p>订单号 {}</p></div>",
            esc(what),
            esc(&t.out_trade_no)
        ),
    )
}

pub fn cancelled_page(t: &Trade) -> String {
    shell(
        "已取消",
        &format!(
            "<div class=\"box\" id=\"cancelled\"><p>您已取消付款。</p><p>订单号 {}</p></div>",
            esc(&t.out_trade_no)
        ),
    )
}

pub fn error_page(message: &str) -> String {
    shell(
        "错误",
        &format!(
            "<div class=\"box\" id=\"error\"><p>请回到请求来源地</p><p>{}</p></div>",
            esc(message)
        ),
    )
}
