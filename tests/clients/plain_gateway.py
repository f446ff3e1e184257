#!/usr/bin/env python3
"""A plain HTTP/1.0 Alipay WAP gateway, written only from docs/protocol/WAP.md,
as many legacy gateways and WAFs behave: Python's http.server, HTTP/1.0, the request body read by
Content-Length and nothing else (a chunked body reads as empty and the call is refused).

It answers alipay.wap.trade.create.direct ([WAP §3]: MD5-signed res_data with a request_token),
shows the cashier for alipay.wap.auth.authAndExecute ([WAP §4]: the redirect's sorted MD5 checked),
and when the buyer pays (GET /pay?token=...) posts the asynchronous notify to the notify_url of the
create call ([WAP §7]: fixed-order MD5) and answers notify_verify ([WAP §8]) with `true` for the
notify_ids it sent. It prints its port on stdout, then serves until killed. It keeps a log of what
it saw at GET /log (JSON).
"""
import argparse, hashlib, http.server, json, re, secrets, sys, threading, urllib.parse, urllib.request
from xml.sax.saxutils import escape, unescape

def md5_sign(presign, key):  # [WAP §5.1] rule 4
    return hashlib.md5((presign + key).encode("utf-8")).hexdigest()

def sorted_presign(params):  # [WAP §5.1] rules 1-3
    kept = [(k, v) for k, v in params if k not in ("sign", "sign_type") and v != ""]
    kept.sort(key=lambda kv: kv[0].encode())
    return "&".join("%s=%s" % kv for kv in kept)

def element(xml, name):
    m = re.search(r"<%s>([^<]*)</%s>" % (name, name), xml)
    return unescape(m.group(1)) if m else None

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--partner", required=True)
    ap.add_argument("--key", required=True)
    a = ap.parse_args()
    trades = {}   # request_token -> trade fields
    sent = set()  # notify_ids sent
    log = {"create_calls": 0, "create_bodies_empty": 0, "content_length_seen": 0, "chunked_seen": 0,
           "notifies_acknowledged": 0, "verify_calls": 0}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def reply(self, status, body, ctype="text/plain; charset=utf-8"):
            body = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            # Content-Length or nothing: no chunked decoding, as a plain HTTP/1.0 server.
            length = int(self.headers.get("Content-Length") or 0)
            with lock:
                log["create_calls"] += 1
                if self.headers.get("Content-Length") is not None:
                    log["content_length_seen"] += 1
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    log["chunked_seen"] += 1
                if length == 0:
                    log["create_bodies_empty"] += 1
            body = self.rfile.read(length).decode("utf-8")
            params = urllib.parse.parse_qsl(body, keep_blank_values=True)
            p = dict(params)
            if p.get("service") != "alipay.wap.trade.create.direct" or p.get("partner") != a.partner:
                return self.reply(200, "res_error=" + urllib.parse.quote(
                    "<err><code>0001</code><sub_code>0001</sub_code><msg>params illegal</msg><detail>empty or bad request</detail></err>"))
            if md5_sign(sorted_presign(params), a.key) != p.get("sign"):
                return self.reply(200, "res_error=" + urllib.parse.quote(
                    "<err><code>0005</code><sub_code>0005</sub_code><msg>sign error</msg><detail>bad sign</detail></err>"))
            req = p["req_data"]
            token = "20100830" + secrets.token_hex(16)
            with lock:
                trades[token] = {
                    "notify_url": element(req, "notify_url"),
                    "out_trade_no": element(req, "out_trade_no"),
                    "subject": element(req, "subject"),
                    "total_fee": element(req, "total_fee"),
                    "seller": element(req, "seller_account_name"),
                }
            res = [("res_data", "<?xml version=\"1.0\" encoding=\"utf-8\"?><direct_trade_create_res><request_token>%s</request_token></direct_trade_create_res>" % token),
                   ("service", p["service"]), ("sec_id", "MD5"), ("partner", a.partner), ("req_id", p["req_id"]), ("v", "2.0")]
            res.append(("sign", md5_sign(sorted_presign(res), a.key)))
            self.reply(200, urllib.parse.urlencode(res))

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
            p = dict(q)
            if url.path == "/log":
                with lock:
                    return self.reply(200, json.dumps(log), "application/json")
            if p.get("service") == "notify_verify":
                with lock:
                    log["verify_calls"] += 1
                    ok = p.get("partner") == a.partner and p.get("notify_id") in sent
                return self.reply(200, "true" if ok else "false")
            if p.get("service") == "alipay.wap.auth.authAndExecute":
                if md5_sign(sorted_presign(q), a.key) != p.get("sign"):
                    return self.reply(400, "bad sign")
                token = element(p.get("req_data", ""), "request_token")
                with lock:
                    known = token in trades
                if not known:
                    return self.reply(400, "unknown token")
                return self.reply(200, "<a href=\"/pay?token=%s\">pay</a>" % token, "text/html; charset=utf-8")
            if url.path == "/pay":
                with lock:
                    t = trades.get(p.get("token"))
                if not t:
                    return self.reply(400, "unknown token")
                notify_id = secrets.token_hex(17)
                with lock:
                    sent.add(notify_id)
                data = ("<notify><payment_type>1</payment_type><subject>%s</subject><trade_no>2014%s</trade_no>"
                        "<buyer_email>buyer@example.com</buyer_email><notify_type>trade_status_sync</notify_type>"
                        "<out_trade_no>%s</out_trade_no><seller_id>%s</seller_id><trade_status>TRADE_SUCCESS</trade_status>"
                        "<total_fee>%s</total_fee><seller_email>%s</seller_email><notify_id>%s</notify_id></notify>") % (
                    escape(t["subject"]), secrets.token_hex(8), escape(t["out_trade_no"]), a.partner,
                    t["total_fee"], escape(t["seller"]), notify_id)
                presign = "service=alipay.wap.trade.create.direct&v=1.0&sec_id=MD5&notify_data=" + data  # [WAP §7.2]
                form = urllib.parse.urlencode([("service", "alipay.wap.trade.create.direct"), ("v", "1.0"),
                                               ("sec_id", "MD5"), ("notify_data", data), ("sign", md5_sign(presign, a.key))])
                try:
                    with urllib.request.urlopen(urllib.request.Request(t["notify_url"], data=form.encode()), timeout=10) as r:
                        answer = r.read()
                except Exception as e:  # noqa: BLE001 - any failure means not acknowledged
                    answer = str(e).encode()
                if answer.strip() == b"success":
                    with lock:
                        log["notifies_acknowledged"] += 1
                return self.reply(200, "notify answered: %s" % answer.decode("utf-8", "replace"))
            self.reply(404, "no such page")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_port, flush=True)
    server.serve_forever()

if __name__ == "__main__":
    sys.exit(main())
