-- Quarantine entries (area Q, mailsift/quarantine.py). The raw message lives in the spool
-- (settings.quarantine_dir/<id>.eml); this row says what it is and what became of it.
-- recipients and reasons are JSON text; times are epoch seconds.
CREATE TABLE quarantine (
    id          TEXT PRIMARY KEY,
    verdict_id  TEXT NOT NULL DEFAULT '',
    sender      TEXT NOT NULL DEFAULT '',
    recipients  TEXT NOT NULL DEFAULT '[]',
    subject     TEXT NOT NULL DEFAULT '',
    from_header TEXT NOT NULL DEFAULT '',
    score       ${FLOAT} NOT NULL DEFAULT 0,
    probability ${FLOAT} NOT NULL DEFAULT 0,
    action      TEXT NOT NULL DEFAULT 'hold',
    reasons     TEXT NOT NULL DEFAULT '{}',
    size        ${BIGINT} NOT NULL DEFAULT 0,
    digest      TEXT NOT NULL DEFAULT '',
    created     ${FLOAT} NOT NULL,
    expires     ${FLOAT} NOT NULL,
    status      TEXT NOT NULL DEFAULT 'held',
    released_at ${FLOAT},
    released_by TEXT,
    deleted_at  ${FLOAT},
    deleted_by  TEXT,
    label       TEXT,
    last_error  TEXT
);
CREATE INDEX quarantine_created ON quarantine (created);
CREATE INDEX quarantine_expires ON quarantine (expires);
CREATE INDEX quarantine_status_created ON quarantine (status, created);
CREATE INDEX quarantine_verdict ON quarantine (verdict_id);
