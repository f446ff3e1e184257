-- payhost schema, version 3: a notification whose sender proved nothing (never verified) is kept
-- as a bounded record only: the first 1 KiB of its body, its size and SHA-256, the reason
-- (notification_results) and the source address, at most a quota per merchant and for less time
-- than verified ones ([retention]).
ALTER TABLE raw_notifications ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE raw_notifications ADD COLUMN body_size INTEGER;
ALTER TABLE raw_notifications ADD COLUMN body_sha256 TEXT;
-- Rows stored before: those never verified (no notify_id in their result) get the shorter
-- retention and the quota too.
UPDATE raw_notifications SET refused = 1, body_size = length(body)
    WHERE id IN (SELECT raw_id FROM notification_results WHERE notify_id IS NULL);
CREATE INDEX raw_notifications_refused ON raw_notifications (merchant_id, id) WHERE refused = 1;
