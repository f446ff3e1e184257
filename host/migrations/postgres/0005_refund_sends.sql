-- payhost schema (PostgreSQL), version 5: when a pending refund was last sent again to the provider
-- under its number (refunds.rs resolve_refund). Claimed with a compare-and-set before each send, so
-- two replicas, the sweep and an admin's sync never send it at once, nor before an earlier send has
-- surely ended.
ALTER TABLE refunds ADD COLUMN last_sent_at TEXT;
