-- payhost schema, version 2: dead-lettered webhooks, admin sessions, per-merchant API tokens,
-- and the index the retention pruning deletes by.

-- When a webhook was queued (its retry window starts then) and when it was given up on.
ALTER TABLE webhook_outbox ADD COLUMN created_ms INTEGER;
ALTER TABLE webhook_outbox ADD COLUMN dead_at TEXT;
ALTER TABLE webhook_outbox ADD COLUMN event_type TEXT;
UPDATE webhook_outbox SET created_ms = next_attempt_ms WHERE created_ms IS NULL;

-- Admin sessions: the SHA-256 of the cookie's random id, its CSRF token and its expiry.
CREATE TABLE admin_sessions (
    id_hash       TEXT PRIMARY KEY,
    csrf          TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL
);

-- Per-merchant API tokens: only the SHA-256 of the token is kept.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    merchant_id   TEXT NOT NULL,
    token_sha256  TEXT NOT NULL UNIQUE,
    label         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);

-- Retention pruning deletes results by their raw notification.
CREATE INDEX notification_results_raw ON notification_results (raw_id);
