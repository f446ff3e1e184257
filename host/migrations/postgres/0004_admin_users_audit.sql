-- payhost schema for PostgreSQL, version 4 (SQLite's 5): admin users (operators and shop owners limited to their merchants),
-- the user of each admin session and its one-shot message (shown after the redirect that follows
-- every form post), and the audit log of state-changing admin actions.

-- role: 'operator' (every merchant) or 'owner' (the merchants in admin_user_merchants only).
-- password_hash: argon2 PHC string; the password itself is never stored.
CREATE TABLE admin_users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('operator', 'owner')),
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL
);

CREATE TABLE admin_user_merchants (
    user_name     TEXT NOT NULL REFERENCES admin_users(name) ON DELETE CASCADE,
    merchant_id   TEXT NOT NULL,
    PRIMARY KEY (user_name, merchant_id)
);

-- user_name NULL: logged in with payhost.toml's admin_password_hash (an operator).
ALTER TABLE admin_sessions ADD COLUMN user_name TEXT;
-- The message of the page the next GET shows (JSON), taken once.
ALTER TABLE admin_sessions ADD COLUMN flash TEXT;

-- Who did what, when, to which merchant. Appended only.
CREATE TABLE admin_audit (
    id            BIGSERIAL PRIMARY KEY,
    at            TEXT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    merchant_id   TEXT,
    detail        TEXT NOT NULL
);
CREATE INDEX admin_audit_merchant ON admin_audit (merchant_id, id);
