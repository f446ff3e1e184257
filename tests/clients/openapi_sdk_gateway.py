#!/usr/bin/env python3
"""An open-platform gateway whose every signature is made or checked by Alipay's official Python SDK
(alipay-sdk-python, pinned in requirements-sdk.txt), for tests/openapi_sdk.rs.

It plays Alipay against `payhost serve`: it checks the signature of every request payhost's component
makes (pay page GETs, alipay.trade.query POSTs) with the SDK's get_sign_content + verify_with_rsa and
the app's public key, and it signs what Alipay sends (notifies, query answers) with the SDK's
sign_with_rsa2 and "Alipay's" private key. Nothing here comes from payhost's code.

    python openapi_sdk_gateway.py --app-public app.pem --alipay-private alipay_pkcs1.pem --app-id 2021...

Prints its port on the first line, then serves until killed:
  GET|POST /gateway.do        the gateway (401 with the reason when the request's signature is refused)
  POST /pay?out_trade_no=N    pays an order the gateway saw: signs its notify and posts it to the order's
                              notify_url; answers with payhost's reply
  POST /pay-silently?out_trade_no=N  pays without a notify (a lost notify: the query must find it)
  POST /tamper-answers        from now on query answers carry a signature over other content
  GET /checks                 the signature checks made so far, as JSON
"""
import argparse
import datetime
import http.server
import json
import sys
import urllib.parse
import urllib.request

from alipay.aop.api.util import SignatureUtils as SU

ARGS = None
TRADES = {}
CHECKS = []
TAMPER = {"on": False}


def bare(pem_text):
    """The SDK takes key bodies without their BEGIN/END lines."""
    return "".join(line for line in pem_text.strip().splitlines() if "-----" not in line)


def beijing_now():
    return (datetime.datetime.utcnow() + datetime.timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")


def sdk_verify_request(params):
    """The gateway's check of a request: every parameter but sign and the empty ones, sorted by the SDK."""
    signed = {k: v for k, v in params.items() if k != "sign" and v != ""}
    content = SU.get_sign_content(signed)
    try:
        ok = SU.verify_with_rsa(ARGS.app_public, content.encode("utf-8"), params.get("sign", ""))
    except Exception:  # python-rsa raises VerificationError
        ok = False
    CHECKS.append({"method": params.get("method"), "ok": ok})
    return ok


def sdk_sign(content):
    return SU.sign_with_rsa2(ARGS.alipay_private, content, "utf-8")


def signed_answer(method, node):
    node_text = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
    sign = sdk_sign(node_text if not TAMPER["on"] else node_text.replace("TRADE_SUCCESS", "TRADE_CLOSED"))
    name = method.replace(".", "_") + "_response"
    return '{"%s":%s,"sign":"%s"}' % (name, node_text, sign)


def notify_body(trade):
    params = {
        "notify_time": beijing_now(),
        "notify_type": "trade_status_sync",
        "notify_id": "sdk" + trade["trade_no"],
        "app_id": ARGS.app_id,
        "charset": "utf-8",
        "version": "1.0",
        "sign_type": "RSA2",
        "trade_no": trade["trade_no"],
        "out_trade_no": trade["out_trade_no"],
        "seller_id": trade["seller_id"],
        "trade_status": "TRADE_SUCCESS",
        "total_amount": trade["total_amount"],
        "subject": trade["subject"],
        "gmt_create": trade["gmt_create"],
        "gmt_payment": beijing_now(),
        "buyer_id": "2088000000000003",
        "fund_bill_list": json.dumps([{"amount": trade["total_amount"], "fundChannel": "ALIPAYACCOUNT"}],
                                     separators=(",", ":")),
    }
    # The notify rule: every parameter but sign and sign_type, sorted (the SDK's get_sign_content).
    content = SU.get_sign_content({k: v for k, v in params.items() if k != "sign_type"})
    params["sign"] = sdk_sign(content)
    return urllib.parse.urlencode(params).encode("utf-8")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):  # quiet
        pass

    def answer(self, status, body, ctype="text/plain; charset=utf-8"):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def params(self):
        url = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            params.update(urllib.parse.parse_qsl(self.rfile.read(length).decode("utf-8"), keep_blank_values=True))
        return url.path, params

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def handle_any(self):
        path, params = self.params()
        if path == "/gateway.do":
            return self.gateway(params)
        if path in ("/pay", "/pay-silently"):
            trade = TRADES.get(params.get("out_trade_no"))
            if trade is None:
                return self.answer(404, "no such trade")
            trade["status"] = "TRADE_SUCCESS"
            trade["trade_no"] = "2026%024d" % (len(CHECKS) + 1000 * len(TRADES))
            if path == "/pay-silently":
                return self.answer(200, "paid")
            req = urllib.request.Request(trade["notify_url"], data=notify_body(trade), method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return self.answer(200, r.read())
            except urllib.error.HTTPError as e:
                return self.answer(200, e.read())
        if path == "/tamper-answers":
            TAMPER["on"] = True
            return self.answer(200, "ok")
        if path == "/checks":
            return self.answer(200, json.dumps(CHECKS), "application/json")
        return self.answer(404, "not found")

    def gateway(self, params):
        if not sdk_verify_request(params):
            return self.answer(401, "the official SDK refused the request's signature")
        method = params.get("method")
        biz = json.loads(params.get("biz_content", "{}"))
        if method in ("alipay.trade.wap.pay", "alipay.trade.page.pay"):
            TRADES.setdefault(biz["out_trade_no"], {
                "out_trade_no": biz["out_trade_no"], "total_amount": biz["total_amount"],
                "subject": biz["subject"], "seller_id": biz.get("seller_id", ""),
                "notify_url": params.get("notify_url", ""), "status": "WAIT_BUYER_PAY",
                "gmt_create": beijing_now(), "trade_no": "",
            })
            return self.answer(200, "verified by the official SDK", "text/html; charset=utf-8")
        if method == "alipay.trade.query":
            trade = TRADES.get(biz.get("out_trade_no"))
            if trade is None or trade["status"] == "WAIT_BUYER_PAY":
                node = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST",
                        "sub_msg": "交易不存在", "out_trade_no": biz.get("out_trade_no", "")}
            else:
                node = {"code": "10000", "msg": "Success", "out_trade_no": trade["out_trade_no"],
                        "trade_no": trade["trade_no"], "trade_status": trade["status"],
                        "total_amount": trade["total_amount"], "buyer_logon_id": "sdk***@example.com",
                        "send_pay_date": beijing_now(), "subject": trade["subject"]}
            return self.answer(200, signed_answer(method, node), "text/html;charset=utf-8")
        return self.answer(200, json.dumps({"error_response": {"code": "40004", "msg": "Business Failed",
                                                                 "sub_code": "isv.invalid-method"}}))


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--app-public", required=True)
    p.add_argument("--alipay-private", required=True)
    p.add_argument("--app-id", required=True)
    ARGS = p.parse_args()
    ARGS.app_public = bare(open(ARGS.app_public, encoding="utf-8").read())
    ARGS.alipay_private = bare(open(ARGS.alipay_private, encoding="utf-8").read())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
