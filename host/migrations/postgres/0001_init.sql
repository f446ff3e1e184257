-- payhost schema for PostgreSQL, version 1: the same tables as SQLite's migrations 1 and 2, plus
-- the webhook lease that lets several replicas share one outbox.

-- Merchants: the plugin settings (JSON list of [name, value]) and the host's own settings.
-- source: 'config' (seeded from payhost.toml) or 'api' (PUT /v1/merchants/{id}, the admin page).
CREATE TABLE merchants (
    id            TEXT PRIMARY KEY,
    settings      TEXT NOT NULL,
    source        TEXT NOT NULL,
    config_hash   TEXT,
    updated_at    TEXT NOT NULL
);

-- Payments. Amounts are integer fen. seq orders payments created in the same second.
CREATE TABLE payments (
    seq           BIGSERIAL NOT NULL,
    merchant_id   TEXT NOT NULL,
    out_trade_no  TEXT NOT NULL,
    subject       TEXT NOT NULL,
    total_fen     BIGINT NOT NULL CHECK (total_fen > 0),
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
CREATE INDEX payments_recent ON payments (created_at DESC, seq DESC);

-- Every notification as received. Never updated.
CREATE TABLE raw_notifications (
    id            BIGSERIAL PRIMARY KEY,
    merchant_id   TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    remote_addr   TEXT,
    body          BYTEA NOT NULL
);

-- What processing concluded, one row per processing of a raw notification.
CREATE TABLE notification_results (
    raw_id        BIGINT NOT NULL REFERENCES raw_notifications(id),
    merchant_id   TEXT NOT NULL,
    notify_id     TEXT,
    out_trade_no  TEXT,
    trade_status  TEXT,
    outcome       TEXT NOT NULL,
    detail        TEXT,
    processed_at  TEXT NOT NULL
);
CREATE INDEX notification_results_order ON notification_results (merchant_id, out_trade_no);
CREATE INDEX notification_results_raw ON notification_results (raw_id);

-- The notify_ids whose effect was applied: the unique key that makes duplicates change nothing,
-- whichever replica receives them.
CREATE TABLE applied_notifications (
    merchant_id   TEXT NOT NULL,
    notify_id     TEXT NOT NULL,
    out_trade_no  TEXT NOT NULL,
    applied_at    TEXT NOT NULL,
    PRIMARY KEY (merchant_id, notify_id)
);

-- Shop webhooks to deliver (outbox), written in the transaction that changed the payment.
-- lease_until: a replica took the event for delivery until then (the database's clock); when
-- the replica dies, the lease expires and another one delivers it.
CREATE TABLE webhook_outbox (
    id              BIGSERIAL PRIMARY KEY,
    event_id        TEXT NOT NULL UNIQUE,
    merchant_id     TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    delivered_at    TEXT,
    last_error      TEXT,
    created_ms      BIGINT NOT NULL,
    dead_at         TEXT,
    event_type      TEXT,
    lease_until     TIMESTAMPTZ
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_ms, id)
    WHERE delivered_at IS NULL AND dead_at IS NULL;

-- Admin sessions: the SHA-256 of the cookie's random id, its CSRF token and its expiry.
CREATE TABLE admin_sessions (
    id_hash       TEXT PRIMARY KEY,
    csrf          TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL
);

-- Per-merchant API tokens: only the SHA-256 of the token is kept.
CREATE TABLE api_tokens (
    id            BIGSERIAL PRIMARY KEY,
    merchant_id   TEXT NOT NULL,
    token_sha256  TEXT NOT NULL UNIQUE,
    label         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);
