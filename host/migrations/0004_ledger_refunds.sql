-- payhost schema, version 4: the ledger. Refunds started here or reported by the provider, the
-- refunded total of each payment, a payment's timeline (redirects, returns, query syncs, closes),
-- each webhook delivery attempt, and the indexes the ledger's filters and paging use.

-- A refund: started from the API or the admin page (started_by names who), or reported by the
-- provider without one started here (started_by = 'gateway'). request_no is the number the
-- provider sees (legacy batch_no, OpenAPI out_request_no); it is stored before the provider is
-- called, so a retry sends the same number. status: PENDING, SUCCESS, FAILED.
CREATE TABLE refunds (
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
    UNIQUE (merchant_id, request_no)
);
CREATE UNIQUE INDEX refunds_key ON refunds (merchant_id, out_trade_no, refund_key) WHERE refund_key IS NOT NULL;
CREATE INDEX refunds_payment ON refunds (merchant_id, out_trade_no);
CREATE INDEX refunds_completed ON refunds (completed_at);

-- What succeeded refunds add up to (kept with the refund rows in the same transaction).
ALTER TABLE payments ADD COLUMN refunded_fen INTEGER NOT NULL DEFAULT 0;

-- A payment's timeline beside its notifications and refunds: each redirect to the provider, the
-- buyer's return, query syncs and closes.
CREATE TABLE payment_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    merchant_id   TEXT NOT NULL,
    out_trade_no  TEXT NOT NULL,
    at            TEXT NOT NULL,
    kind          TEXT NOT NULL,
    detail        TEXT
);
CREATE INDEX payment_events_payment ON payment_events (merchant_id, out_trade_no, id);

-- Each delivery attempt of a shop webhook: the shop's HTTP status (NULL when none came) or the error.
CREATE TABLE webhook_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id    INTEGER NOT NULL,
    merchant_id   TEXT NOT NULL,
    out_trade_no  TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    at            TEXT NOT NULL,
    http_status   INTEGER,
    error         TEXT
);
CREATE INDEX webhook_attempts_payment ON webhook_attempts (merchant_id, out_trade_no, id);

-- The ledger lists newest first with keyset paging on (created_at, merchant_id, out_trade_no),
-- for all merchants or one, by status; trade numbers are searched exactly.
CREATE INDEX payments_ledger ON payments (created_at, merchant_id, out_trade_no);
CREATE INDEX payments_ledger_merchant ON payments (merchant_id, created_at, out_trade_no);
CREATE INDEX payments_ledger_status ON payments (status, created_at, merchant_id, out_trade_no);
CREATE INDEX payments_trade_no ON payments (trade_no);
