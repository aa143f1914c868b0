-- Web UI sessions (mailsift.api.ui): one row per logged-in browser. Only the sha256 of the
-- session cookie is stored; ``credential`` is a fingerprint of the account's password hash at
-- login, so a password change ends every session made with the old password.
CREATE TABLE ui_sessions (
    session_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    credential TEXT NOT NULL,
    client_ip TEXT NOT NULL DEFAULT '',
    created ${FLOAT} NOT NULL,
    expires ${FLOAT} NOT NULL
);
CREATE INDEX ui_sessions_user ON ui_sessions (user_name);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires);

-- Failed web logins, counted by the login throttle per (client address, account), per
-- address, per account and in all; rows older than the throttle's window are deleted.
CREATE TABLE ui_login_failures (
    failure_id ${AUTOID},
    created ${FLOAT} NOT NULL,
    client_ip TEXT NOT NULL,
    user_name TEXT NOT NULL
);
CREATE INDEX ui_login_failures_pair ON ui_login_failures (client_ip, user_name, created);
CREATE INDEX ui_login_failures_user ON ui_login_failures (user_name, created);
CREATE INDEX ui_login_failures_created ON ui_login_failures (created);
