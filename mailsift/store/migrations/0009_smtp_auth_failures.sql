-- Failed SMTP AUTH attempts (mailsift.smtpd.limits.AuthThrottle): in the store, so every
-- worker process and every node on it count the same attempts; rows older than the
-- throttle's window are deleted.
CREATE TABLE smtp_auth_failures (
    failure_id ${AUTOID},
    created ${FLOAT} NOT NULL,
    client_ip TEXT NOT NULL,
    user_name TEXT NOT NULL
);
CREATE INDEX smtp_auth_failures_ip ON smtp_auth_failures (client_ip, created);
CREATE INDEX smtp_auth_failures_created ON smtp_auth_failures (created);
