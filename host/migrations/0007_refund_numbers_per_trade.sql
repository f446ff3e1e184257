-- payhost schema, version 7: a refund's request number is unique per trade, as the provider keeps
-- it (an open-platform out_request_no is the merchant's own, per trade: another system refunding
-- two trades may number both "1"). Those payhost numbers itself stay unique per merchant (a
-- legacy batch_no is unique per partner at Alipay). SQLite cannot drop a table's UNIQUE
-- constraint: the table is made again with the same columns and ids.
CREATE TABLE refunds_v7 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    merchant_id   TEXT NOT NULL,
    out_trade_no  TEXT NOT NULL,
    request_no    TEXT NOT NULL,
    refund_key    TEXT,
    amount_fen    INTEGER NOT NULL CHECK (amount_fen > 0),
    reason        TEXT NOT NULL,
    started_by    TEXT NOT NULL,
    status        TEXT NOT NULL,
    confirm_url   TEXT,
    detail        TEXT,
    created_at    TEXT NOT NULL,
    completed_at  TEXT,
    last_sent_at  TEXT,
    UNIQUE (merchant_id, out_trade_no, request_no)
);
INSERT INTO refunds_v7 (id, merchant_id, out_trade_no, request_no, refund_key, amount_fen, reason,
                        started_by, status, confirm_url, detail, created_at, completed_at, last_sent_at)
    SELECT id, merchant_id, out_trade_no, request_no, refund_key, amount_fen, reason,
           started_by, status, confirm_url, detail, created_at, completed_at, last_sent_at
    FROM refunds;
-- The ids go on from where they were, not from the highest one left (refunds of a removed
-- merchant are deleted): an id once handed out (an audit line, a shop's webhook) is never
-- given again.
DELETE FROM sqlite_sequence WHERE name = 'refunds_v7';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'refunds_v7', MAX(seq) FROM (
        SELECT seq FROM sqlite_sequence WHERE name = 'refunds'
        UNION ALL SELECT COALESCE(MAX(id), 0) FROM refunds_v7
    );
DROP TABLE refunds;
ALTER TABLE refunds_v7 RENAME TO refunds;
CREATE UNIQUE INDEX refunds_issued ON refunds (merchant_id, request_no) WHERE started_by <> 'gateway';
CREATE UNIQUE INDEX refunds_key ON refunds (merchant_id, out_trade_no, refund_key) WHERE refund_key IS NOT NULL;
CREATE INDEX refunds_payment ON refunds (merchant_id, out_trade_no);
CREATE INDEX refunds_completed ON refunds (completed_at);
