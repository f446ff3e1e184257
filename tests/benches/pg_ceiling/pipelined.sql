-- One notification as payhost sends it to PostgreSQL now (host/src/store/postgres/tx.rs): the
-- merchant and the order read, then two round trips for the transaction.
\set n random(1, 200000)
\set k random(1, 1000000000)
SELECT settings FROM merchants WHERE id = 'm1';
SELECT merchant_id, out_trade_no, subject, total_fen, seller, return_url, status, request_token, pay_url, trade_no, buyer_email, paid_at, review, created_at, updated_at FROM payments WHERE merchant_id = 'm1' AND out_trade_no = 'o' || :n;
\startpipeline
BEGIN;
WITH p AS (SELECT merchant_id, out_trade_no, subject, total_fen, seller, return_url, status, request_token, pay_url, trade_no, buyer_email, paid_at, review, created_at, updated_at FROM payments WHERE merchant_id = 'm1' AND out_trade_no = 'o' || :n FOR UPDATE), c AS (INSERT INTO applied_notifications (merchant_id, notify_id, out_trade_no, applied_at) SELECT merchant_id, 'n' || :k || '-' || :n, out_trade_no, '2026-12-04T00:00:00Z' FROM p ON CONFLICT DO NOTHING RETURNING 1) SELECT p.*, EXISTS (SELECT 1 FROM c) AS claimed FROM p;
\endpipeline
\startpipeline
UPDATE payments SET status = 'TRADE_SUCCESS', trade_no = COALESCE('2026' || :k, trade_no), buyer_email = COALESCE('b@example.com', buyer_email), paid_at = '2026-12-04T00:00:00Z', updated_at = '2026-12-04T00:00:00Z' WHERE merchant_id = 'm1' AND out_trade_no = 'o' || :n;
WITH raw AS (INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body) VALUES ('m1', '2026-12-04T00:00:00Z', '127.0.0.1', convert_to(repeat('notify_data=x', 48), 'UTF8')) RETURNING id) INSERT INTO notification_results (raw_id, merchant_id, notify_id, out_trade_no, trade_status, outcome, detail, processed_at) SELECT id, 'm1', 'n' || :k, 'o' || :n, 'TRADE_SUCCESS', 'applied', NULL, '2026-12-04T00:00:00Z' FROM raw RETURNING raw_id;
COMMIT;
\endpipeline
