-- Greylisting state of the SQL backend (mailsift.store.greylist; the Redis backend keeps its
-- own keys): triplets and client pass counts, each with its logical expiry (epoch seconds).
-- IF NOT EXISTS: a greylist file made before these tables were a migration already holds
-- them (with the same columns) and keeps its rows.
CREATE TABLE IF NOT EXISTS greylist_triplets (
    key        TEXT PRIMARY KEY,
    first_seen ${FLOAT} NOT NULL,
    passed     ${FLOAT},
    last_seen  ${FLOAT} NOT NULL,
    expires    ${FLOAT} NOT NULL
);
CREATE TABLE IF NOT EXISTS greylist_clients (
    client  TEXT PRIMARY KEY,
    passes  INTEGER NOT NULL,
    expires ${FLOAT} NOT NULL
);
CREATE INDEX IF NOT EXISTS greylist_triplets_expires ON greylist_triplets (expires);
