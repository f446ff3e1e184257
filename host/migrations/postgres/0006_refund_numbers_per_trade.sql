-- payhost schema (PostgreSQL), version 6: a refund's request number is unique per trade, as the
-- provider keeps it (an open-platform out_request_no is the merchant's own, per trade: another
-- system refunding two trades may number both "1"). Those payhost numbers itself stay unique per
-- merchant (a legacy batch_no is unique per partner at Alipay).
ALTER TABLE refunds DROP CONSTRAINT refunds_merchant_id_request_no_key;
ALTER TABLE refunds ADD CONSTRAINT refunds_trade_request_no UNIQUE (merchant_id, out_trade_no, request_no);
CREATE UNIQUE INDEX refunds_issued ON refunds (merchant_id, request_no) WHERE started_by <> 'gateway';
