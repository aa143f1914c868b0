BEGIN TRANSACTION;
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    scopes TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    revoked REAL
);
INSERT INTO "api_keys" VALUES('0123456789ab','old key','aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa','score','',1796000003.0,NULL);
CREATE TABLE audit (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    created  REAL NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL DEFAULT '',
    detail   TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE feedback (
    feedback_id INTEGER PRIMARY KEY AUTOINCREMENT,
    created     REAL NOT NULL,
    verdict_id  TEXT,
    digest      TEXT NOT NULL,
    label       TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    source      TEXT NOT NULL,
    status      TEXT NOT NULL
, reporter TEXT NOT NULL DEFAULT '');
INSERT INTO "feedback" VALUES(1,1796000001.0,'v-old-1','dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd','spam','alice@example.com','user','accepted','alice@example.com');
CREATE TABLE feedback_messages (
    digest  TEXT PRIMARY KEY,
    created REAL NOT NULL,
    raw     BLOB NOT NULL
);
CREATE TABLE feedback_votes (
    vote_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    created  REAL NOT NULL,
    reporter TEXT NOT NULL,
    domain   TEXT NOT NULL,
    digest   TEXT NOT NULL,
    label    TEXT NOT NULL
);
CREATE TABLE learn_events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    created  REAL NOT NULL,
    digest   TEXT NOT NULL,
    label    TEXT NOT NULL,
    unlearn  TEXT,
    weight   REAL NOT NULL
, layer TEXT NOT NULL DEFAULT 'model', reporters TEXT NOT NULL DEFAULT '[]', cols BLOB, amount REAL NOT NULL DEFAULT 0);
CREATE TABLE learned (
    digest  TEXT PRIMARY KEY,
    label   TEXT NOT NULL,
    weight  REAL NOT NULL,
    updated REAL NOT NULL
, layer TEXT NOT NULL DEFAULT 'model');
CREATE TABLE list_version (
    id      INTEGER PRIMARY KEY,
    version INTEGER NOT NULL
);
INSERT INTO "list_version" VALUES(1,1);
CREATE TABLE model_generation (
    name TEXT PRIMARY KEY,
    generation TEXT NOT NULL,
    updated REAL NOT NULL
);
INSERT INTO "model_generation" VALUES('serving','gen-1',1796000006.0);
CREATE TABLE quarantine (
    id          TEXT PRIMARY KEY,
    verdict_id  TEXT NOT NULL DEFAULT '',
    sender      TEXT NOT NULL DEFAULT '',
    recipients  TEXT NOT NULL DEFAULT '[]',
    subject     TEXT NOT NULL DEFAULT '',
    from_header TEXT NOT NULL DEFAULT '',
    score       REAL NOT NULL DEFAULT 0,
    probability REAL NOT NULL DEFAULT 0,
    action      TEXT NOT NULL DEFAULT 'hold',
    reasons     TEXT NOT NULL DEFAULT '{}',
    size        INTEGER NOT NULL DEFAULT 0,
    digest      TEXT NOT NULL DEFAULT '',
    created     REAL NOT NULL,
    expires     REAL NOT NULL,
    status      TEXT NOT NULL DEFAULT 'held',
    released_at REAL,
    released_by TEXT,
    deleted_at  REAL,
    deleted_by  TEXT,
    label       TEXT,
    last_error  TEXT
);
INSERT INTO "quarantine" VALUES('ffffffffffffffffffffffffffffffff','v-old-1','spammer@bad.example','["alice@example.com"]','Cheap meds','',0.0,0.0,'hold','{}',0,'',1796000004.0,1798592004.0,'held',NULL,NULL,NULL,NULL,NULL,NULL);
CREATE TABLE retrains (
    run_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    created       REAL NOT NULL,
    model_version TEXT NOT NULL,
    last_event_id INTEGER NOT NULL,
    promoted      INTEGER NOT NULL DEFAULT 0,
    detail        TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE schema_migrations ( version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied REAL NOT NULL, checksum TEXT NOT NULL);
INSERT INTO "schema_migrations" VALUES(1,'core',1.7966470245892164707e+09,'9e85fe27bd99a4b3623c57d945d4faf4a62fab0a222d90724ef44af4a0d87181');
INSERT INTO "schema_migrations" VALUES(2,'feedback_layers',1.79664702459897327423e+09,'d9ac554a22eb0ce2dcecf8bede7bb7c7f4dac999e223ab1a9e9e30ef090ab992');
INSERT INTO "schema_migrations" VALUES(100,'api_keys',1.79664702460967802997e+09,'7757bc55b6574e025e0c49edabfb03a6c1bca7fe7c331d544670500bbc6f4a42');
INSERT INTO "schema_migrations" VALUES(200,'quarantine',1.79664702461818647383e+09,'404785c971ab0c6798a007dd0d66ed1a2b98dae0cbd64ae61c31366d3ee602cd');
INSERT INTO "schema_migrations" VALUES(210,'ui_sessions',1.79664702462188720704e+09,'ec3fffc61c692c64693f5bfa3b95fe93b7eaaf0a74c74bae8dac3e3577b2d8d0');
INSERT INTO "schema_migrations" VALUES(500,'model_generation',1.79664702462984275819e+09,'50f09e5ed65d0d47d40d0bc23a9dd87ba34cd65bcb98c23caef5ef7d23fdb6b2');
CREATE TABLE sender_lists (
    kind     TEXT NOT NULL,
    owner    TEXT NOT NULL DEFAULT '',
    pattern  TEXT NOT NULL,
    created  REAL NOT NULL,
    added_by TEXT NOT NULL DEFAULT '',
    comment  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (kind, owner, pattern)
);
INSERT INTO "sender_lists" VALUES('block','','spammer.example',1796000002.0,'admin','');
CREATE TABLE ui_login_failures (
    failure_id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    client_ip TEXT NOT NULL,
    user_name TEXT NOT NULL
);
CREATE TABLE ui_sessions (
    session_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    credential TEXT NOT NULL,
    client_ip TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    expires REAL NOT NULL
);
INSERT INTO "ui_sessions" VALUES('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb','alice@example.com','csrf','cred','',1796000005.0,1796003605.0);
CREATE TABLE user_lessons (
    lesson_id INTEGER PRIMARY KEY AUTOINCREMENT,
    created   REAL NOT NULL,
    user_name TEXT NOT NULL,
    digest    TEXT NOT NULL,
    label     TEXT NOT NULL,
    cols      BLOB NOT NULL,
    delta     REAL NOT NULL
);
CREATE TABLE verdict_samples (
    verdict_id TEXT PRIMARY KEY,
    created    REAL NOT NULL,
    raw        BLOB NOT NULL
);
INSERT INTO "verdict_samples" VALUES('v-old-1',1796000000.0,X'78010B2E4DCA4A4D2EB152C8CF49E1E5E2E54ACA4FA9E4E502005289065D');
CREATE TABLE verdicts (
    verdict_id    TEXT PRIMARY KEY,
    created       REAL NOT NULL,
    digest        TEXT NOT NULL,
    recipients    TEXT NOT NULL DEFAULT '[]',
    sender        TEXT NOT NULL DEFAULT '',
    client_ip     TEXT NOT NULL DEFAULT '',
    score         REAL NOT NULL,
    probability   REAL NOT NULL,
    action        TEXT NOT NULL,
    model_version TEXT NOT NULL DEFAULT '',
    rules         TEXT NOT NULL DEFAULT '[]',
    list_decision TEXT,
    reason        TEXT NOT NULL DEFAULT ''
);
INSERT INTO "verdicts" VALUES('v-old-1',1796000000.0,'dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd','["alice@example.com"]','','',7.5,0.9,'spam','m-old','[["GTUBE",1000.0]]',NULL,'');
CREATE TABLE vote_bands (
    band    TEXT NOT NULL,
    vote_id INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX verdicts_digest ON verdicts (digest);
CREATE INDEX verdicts_created ON verdicts (created);
CREATE INDEX verdict_samples_created ON verdict_samples (created);
CREATE INDEX feedback_created ON feedback (created);
CREATE INDEX feedback_user ON feedback (user_name, created);
CREATE INDEX feedback_source ON feedback (source, created);
CREATE INDEX feedback_digest ON feedback (digest);
CREATE INDEX audit_created ON audit (created);
CREATE INDEX audit_actor ON audit (actor, created);
CREATE INDEX feedback_reporter ON feedback (reporter, created);
CREATE INDEX user_lessons_user ON user_lessons (user_name);
CREATE INDEX feedback_votes_created ON feedback_votes (created);
CREATE INDEX vote_bands_band ON vote_bands (band, created);
CREATE INDEX vote_bands_created ON vote_bands (created);
CREATE INDEX quarantine_created ON quarantine (created);
CREATE INDEX quarantine_expires ON quarantine (expires);
CREATE INDEX quarantine_status_created ON quarantine (status, created);
CREATE INDEX quarantine_verdict ON quarantine (verdict_id);
CREATE INDEX ui_sessions_user ON ui_sessions (user_name);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires);
CREATE INDEX ui_login_failures_pair ON ui_login_failures (client_ip, user_name, created);
CREATE INDEX ui_login_failures_user ON ui_login_failures (user_name, created);
CREATE INDEX ui_login_failures_created ON ui_login_failures (created);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('feedback',1);
COMMIT;
