#!/usr/bin/env python3
"""An independent Alipay WAP-pay client, written only from docs/protocol/WAP.md ([WAP §2] to
[WAP §8]), used to check that payhost's sandbox gateway speaks the protocol, not just payhost.

It creates a trade (alipay.wap.trade.create.direct), opens the cashier (alipay.wap.auth.authAndExecute),
pays, verifies the call-back (sorted MD5) and receives the notify on its own server (fixed-order MD5,
then notify_verify, then the reply `success`). Prints PAID on success; exits non-zero otherwise.
"""
import argparse, hashlib, http.server, re, sys, threading, time, urllib.parse, urllib.request
from xml.sax.saxutils import escape

def md5_sign(presign, key):  # [WAP §5.1] rule 4: md5(string + key), lower hex, UTF-8
    return hashlib.md5((presign + key).encode("utf-8")).hexdigest()

def sorted_presign(params):  # [WAP §5.1] rules 1-3
    kept = [(k, v) for k, v in params if k not in ("sign", "sign_type") and v != ""]
    kept.sort(key=lambda kv: kv[0].encode())
    return "&".join("%s=%s" % kv for kv in kept)

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

def fetch(url, data=None):
    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, data=data.encode() if data is not None else None)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:  # 302 lands here without a redirect handler
        return e.code, dict(e.headers), e.read()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sandbox", required=True)
    ap.add_argument("--partner", required=True)
    ap.add_argument("--key", required=True)
    a = ap.parse_args()
    result = {}

    class Notify(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            p = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
            # [WAP §7.2]: fixed order service, v, sec_id, notify_data; v as received
            presign = "service=%s&v=%s&sec_id=%s&notify_data=%s" % (p["service"], p["v"], p["sec_id"], p["notify_data"])
            ok = md5_sign(presign, a.key) == p["sign"]
            notify_id = re.search(r"<notify_id>([^<]+)</notify_id>", p["notify_data"]).group(1)
            q = urllib.parse.urlencode({"service": "notify_verify", "partner": a.partner, "notify_id": notify_id})
            _, _, atn = fetch(a.sandbox + "/mapi?" + q)  # [WAP §8]
            status = re.search(r"<trade_status>([^<]+)</trade_status>", p["notify_data"]).group(1)
            result["notify"] = ok and atn.strip() == b"true" and status == "TRADE_SUCCESS"
            reply = b"success" if result["notify"] else b"fail"
            self.send_response(200); self.send_header("Content-Length", str(len(reply))); self.end_headers(); self.wfile.write(reply)
        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Notify)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    notify_url = "http://127.0.0.1:%d/notify" % server.server_port

    out_trade_no = "PY%d" % int(time.time() * 1000)
    req_data = ("<direct_trade_create_req><notify_url>%s</notify_url><call_back_url>%s</call_back_url>"
                "<seller_account_name>%s</seller_account_name><out_trade_no>%s</out_trade_no><subject>%s</subject>"
                "<total_fee>%s</total_fee></direct_trade_create_req>") % (
        escape(notify_url), escape("http://shop.example/callback"), escape("seller@example.com"),
        out_trade_no, escape("Python & 测试"), "0.01")
    params = [("service", "alipay.wap.trade.create.direct"), ("format", "xml"), ("v", "2.0"),
              ("partner", a.partner), ("req_id", out_trade_no), ("sec_id", "MD5"), ("req_data", req_data),
              ("_input_charset", "utf-8")]
    params.append(("sign", md5_sign(sorted_presign(params), a.key)))
    status, _, body = fetch(a.sandbox + "/gateway", urllib.parse.urlencode(params))
    reply = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)  # [WAP §3.2]: a set, any order
    r = dict(reply)
    if "res_data" not in r:
        sys.exit("create refused: %r" % r)
    if md5_sign(sorted_presign(reply), a.key) != r["sign"]:  # [WAP §3.3]
        sys.exit("create response signature mismatch")
    token = re.search(r"<request_token>([^<]+)</request_token>", r["res_data"]).group(1)

    auth = [("service", "alipay.wap.auth.authAndExecute"), ("format", "xml"), ("v", "2.0"), ("partner", a.partner),
            ("req_id", out_trade_no), ("sec_id", "MD5"),
            ("req_data", "<auth_and_execute_req><request_token>%s</request_token></auth_and_execute_req>" % escape(token))]
    auth.append(("sign", md5_sign(sorted_presign(auth), a.key)))
    status, _, page = fetch(a.sandbox + "/gateway?" + urllib.parse.urlencode(auth))
    if status != 200 or "确认付款" not in page.decode():
        sys.exit("cashier not shown: %d" % status)
    cashier_token = re.search(r'name="token" value="([^"]+)"', page.decode()).group(1)

    status, headers, _ = fetch(a.sandbox + "/cashier/pay", urllib.parse.urlencode({"token": cashier_token}))
    location = headers.get("Location") or headers.get("location")
    if status != 302 or not location:
        sys.exit("no call-back redirect: %d" % status)
    cb = urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query, keep_blank_values=True)
    cbd = dict(cb)
    if md5_sign(sorted_presign(cb), a.key) != cbd["sign"] or cbd["result"] != "success":  # [WAP §6]
        sys.exit("call-back signature mismatch: %r" % cbd)

    deadline = time.time() + 10
    while "notify" not in result and time.time() < deadline:
        time.sleep(0.05)
    if not result.get("notify"):
        sys.exit("notify missing or not verified")
    print("PAID", out_trade_no)

if __name__ == "__main__":
    main()
