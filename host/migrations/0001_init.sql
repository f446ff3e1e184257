-- payhost schema, version 1.

-- Merchants: the plugin settings (JSON list of [name, value]) and the host's own settings.
-- source: 'config' (seeded from payhost.toml) or 'api' (PUT /v1/merchants/{id}, the admin page).
-- config_hash: the payhost.toml table last seeded, so a changed table is applied again at start.
CREATE TABLE merchants (
    id            TEXT PRIMARY KEY,
    settings      TEXT NOT NULL,
    source        TEXT NOT NULL,
    config_hash   TEXT,
    updated_at    TEXT NOT NULL
);

-- Payments. Amounts are integer fen. status: WAIT_BUYER_PAY, TRADE_SUCCESS, TRADE_FINISHED,
-- TRADE_CLOSED. review: why a human must look (amount or seller mismatch), NULL otherwise.
CREATE TABLE payments (
    merchant_id   TEXT NOT NULL,
    out_trade_no  TEXT NOT NULL,
    subject       TEXT NOT NULL,
    total_fen     INTEGER NOT NULL CHECK (total_fen > 0),
    seller        TEXT NOT NULL,
    return_url    TEXT NOT NULL,
    status        TEXT NOT NULL,
    request_token TEXT,
    pay_url       TEXT,
    trade_no      TEXT,
    buyer_email   TEXT,
    paid_at       TEXT,
    review        TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (merchant_id, out_trade_no)
);

-- Every notification as received, stored before anything else is done with it. Never updated.
CREATE TABLE raw_notifications (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    merchant_id   TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    remote_addr   TEXT,
    body          BLOB NOT NULL
);

-- What processing concluded, one row per processing of a raw notification.
CREATE TABLE notification_results (
    raw_id        INTEGER NOT NULL REFERENCES raw_notifications(id),
    merchant_id   TEXT NOT NULL,
    notify_id     TEXT,
    out_trade_no  TEXT,
    trade_status  TEXT,
    outcome       TEXT NOT NULL,
    detail        TEXT,
    processed_at  TEXT NOT NULL
);
CREATE INDEX notification_results_order ON notification_results (merchant_id, out_trade_no);

-- The notify_ids whose effect was applied: the key that makes duplicates change nothing.
CREATE TABLE applied_notifications (
    merchant_id   TEXT NOT NULL,
    notify_id     TEXT NOT NULL,
    out_trade_no  TEXT NOT NULL,
    applied_at    TEXT NOT NULL,
    PRIMARY KEY (merchant_id, notify_id)
);

-- Shop webhooks to deliver (outbox): written in the transaction that changed the payment.
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL UNIQUE,
    merchant_id     TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    delivered_at    TEXT,
    last_error      TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (delivered_at, next_attempt_ms);
