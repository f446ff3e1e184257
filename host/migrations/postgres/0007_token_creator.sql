-- payhost schema (PostgreSQL), version 7: who made each API token, as the audit log names them (an
-- admin user's name, `admin_password`, `api:…`, or a command such as `payhost token`), so that
-- removing an admin user revokes the tokens they made, and the token lists say who made each.
-- NULL: made before version 7 (by nobody known).
ALTER TABLE api_tokens ADD COLUMN created_by TEXT;
