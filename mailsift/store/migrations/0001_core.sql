-- mailsift store: verdicts, feedback, learning state, sender lists, audit trail.

CREATE TABLE verdicts (
    verdict_id    TEXT PRIMARY KEY,
    created       ${FLOAT} NOT NULL,
    digest        TEXT NOT NULL,
    recipients    TEXT NOT NULL DEFAULT '[]',
    sender        TEXT NOT NULL DEFAULT '',
    client_ip     TEXT NOT NULL DEFAULT '',
    score         ${FLOAT} NOT NULL,
    probability   ${FLOAT} NOT NULL,
    action        TEXT NOT NULL,
    model_version TEXT NOT NULL DEFAULT '',
    rules         TEXT NOT NULL DEFAULT '[]',
    list_decision TEXT,
    reason        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX verdicts_digest ON verdicts (digest);
CREATE INDEX verdicts_created ON verdicts (created);

-- the raw message (zlib) kept for a while so feedback by verdict id can learn from it
CREATE TABLE verdict_samples (
    verdict_id TEXT PRIMARY KEY,
    created    ${FLOAT} NOT NULL,
    raw        ${BLOB} NOT NULL
);
CREATE INDEX verdict_samples_created ON verdict_samples (created);

-- every report, whatever became of it (status)
CREATE TABLE feedback (
    feedback_id ${AUTOID},
    created     ${FLOAT} NOT NULL,
    verdict_id  TEXT,
    digest      TEXT NOT NULL,
    label       TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    source      TEXT NOT NULL,
    status      TEXT NOT NULL
);
CREATE INDEX feedback_created ON feedback (created);
CREATE INDEX feedback_user ON feedback (user_name, created);
CREATE INDEX feedback_source ON feedback (source, created);
CREATE INDEX feedback_digest ON feedback (digest);

-- reported messages (zlib), kept for the next full retrain
CREATE TABLE feedback_messages (
    digest  TEXT PRIMARY KEY,
    created ${FLOAT} NOT NULL,
    raw     ${BLOB} NOT NULL
);

-- what the live model has been taught, one row per message digest
CREATE TABLE learned (
    digest  TEXT PRIMARY KEY,
    label   TEXT NOT NULL,
    weight  ${FLOAT} NOT NULL,
    updated ${FLOAT} NOT NULL
);

-- the learn log every process replays onto its in-memory model, in event_id order
CREATE TABLE learn_events (
    event_id ${AUTOID},
    created  ${FLOAT} NOT NULL,
    digest   TEXT NOT NULL,
    label    TEXT NOT NULL,
    unlearn  TEXT,
    weight   ${FLOAT} NOT NULL
);

CREATE TABLE sender_lists (
    kind     TEXT NOT NULL,
    owner    TEXT NOT NULL DEFAULT '',
    pattern  TEXT NOT NULL,
    created  ${FLOAT} NOT NULL,
    added_by TEXT NOT NULL DEFAULT '',
    comment  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (kind, owner, pattern)
);

CREATE TABLE list_version (
    id      INTEGER PRIMARY KEY,
    version ${BIGINT} NOT NULL
);
INSERT INTO list_version (id, version) VALUES (1, 0);

CREATE TABLE audit (
    event_id ${AUTOID},
    created  ${FLOAT} NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL DEFAULT '',
    detail   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_created ON audit (created);
CREATE INDEX audit_actor ON audit (actor, created);

-- full retrains: which learn events the retrained model already contains
CREATE TABLE retrains (
    run_id        ${AUTOID},
    created       ${FLOAT} NOT NULL,
    model_version TEXT NOT NULL,
    last_event_id ${BIGINT} NOT NULL,
    promoted      INTEGER NOT NULL DEFAULT 0,
    detail        TEXT NOT NULL DEFAULT '{}'
);
