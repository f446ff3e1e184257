-- payhost schema, version 9: when the provider reported the trade finished (TRADE_FINISHED: no
-- refund of it is possible any more), kept apart from the status because a refund reported
-- around it moves the status to PARTIALLY_REFUNDED or REFUNDED, and the trade stays final.
-- Payments finished before version 9 take it from their status (a finished trade whose later
-- partial refund notice moved its status before version 9 cannot be told apart; the provider
-- refuses its refunds).
ALTER TABLE payments ADD COLUMN finished_at TEXT;
UPDATE payments SET finished_at = updated_at WHERE status = 'TRADE_FINISHED';
