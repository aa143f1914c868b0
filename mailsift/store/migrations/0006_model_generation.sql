-- The serving model's generation shared by every node on this store (mailsift.api.reload):
-- a reload writes a new one; every API worker, SMTP filter and milter polls it and reloads
-- the serving model when it changes, so a promotion on one node reaches all of them.
CREATE TABLE model_generation (
    name TEXT PRIMARY KEY,
    generation TEXT NOT NULL,
    updated ${FLOAT} NOT NULL
);
