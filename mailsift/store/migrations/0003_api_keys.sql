-- API keys of the HTTP API (mailsift.api.keys): only the sha256 of each token is stored.
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    scopes TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    created ${FLOAT} NOT NULL,
    revoked ${FLOAT}
);
