-- Mail accounts (mailsift.smtpd.accounts): who may AUTH over SMTP and log in to the web UI,
-- and which local mailboxes exist. Only an argon2id hash of each password is stored;
-- disabled and admin are 0/1; an account past its expires time (epoch seconds) is "old".
CREATE TABLE accounts (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    admin         INTEGER NOT NULL DEFAULT 0,
    expires       ${FLOAT},
    created       ${FLOAT} NOT NULL DEFAULT 0
);

-- The accounts JSON file this store imported its accounts from (at most one import: after
-- it, the store is the only source and the file is no longer read).
CREATE TABLE accounts_imports (
    source   TEXT PRIMARY KEY,
    imported ${FLOAT} NOT NULL,
    accounts INTEGER NOT NULL
);
