-- One notification as payhost sent it to PostgreSQL before round 3, session 7: every statement
-- a round trip of its own. Bodies and values are the load bench's sizes; :n picks a payment.
\set n random(1, 200000)
\set k random(1, 1000000000)
SELECT settings FROM merchants WHERE id = 'm1';
SELECT merchant_id, out_trade_no, subject, total_fen, seller, return_url, status, request_token, pay_url, trade_no, buyer_email, paid_at, review, created_at, updated_at FROM payments WHERE merchant_id = 'm1' AND out_trade_no = 'o' || :n;
BEGIN;
INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body) VALUES ('m1', '2026-12-04T00:00:00Z', '127.0.0.1', convert_to(repeat('notify_data=x', 48), 'UTF8')) RETURNING id \gset
SELECT merchant_id, out_trade_no, subject, total_fen, seller, return_url, status, request_token, pay_url, trade_no, buyer_email, paid_at, review, created_at, updated_at FROM payments WHERE merchant_id = 'm1' AND out_trade_no = 'o' || :n FOR UPDATE;
INSERT INTO applied_notifications (merchant_id, notify_id, out_trade_no, applied_at) VALUES ('m1', 'n' || :k || '-' || :n, 'o' || :n, '2026-12-04T00:00:00Z') ON CONFLICT DO NOTHING;
UPDATE payments SET status = 'TRADE_SUCCESS', trade_no = COALESCE('2026' || :k, trade_no), buyer_email = COALESCE('b@example.com', buyer_email), paid_at = '2026-12-04T00:00:00Z', updated_at = '2026-12-04T00:00:00Z' WHERE merchant_id = 'm1' AND out_trade_no = 'o' || :n;
INSERT INTO notification_results (raw_id, merchant_id, notify_id, out_trade_no, trade_status, outcome, detail, processed_at) VALUES (:id, 'm1', 'n' || :k, 'o' || :n, 'TRADE_SUCCESS', 'applied', NULL, '2026-12-04T00:00:00Z');
COMMIT;
