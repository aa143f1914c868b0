-- Feedback that no single reporter can steer (mailsift.classifier.feedback): who reported
-- (the reporter, for per-reporter rate caps and votes), which layer a lesson lives in, the
-- users' personal lessons and the corroboration votes.
ALTER TABLE feedback ADD COLUMN reporter TEXT NOT NULL DEFAULT '';
CREATE INDEX feedback_reporter ON feedback (reporter, created);

-- 'model': a trusted lesson, learned by the model's own arrays; 'global': a corroborated
-- users' lesson, an additive correction charged to its reporters' budgets
ALTER TABLE learned ADD COLUMN layer TEXT NOT NULL DEFAULT 'model';
ALTER TABLE learn_events ADD COLUMN layer TEXT NOT NULL DEFAULT 'model';
ALTER TABLE learn_events ADD COLUMN reporters TEXT NOT NULL DEFAULT '[]';
ALTER TABLE learn_events ADD COLUMN cols ${BLOB};
ALTER TABLE learn_events ADD COLUMN amount ${FLOAT} NOT NULL DEFAULT 0;

-- a user's own lessons: a log-odds delta spread over the columns of the reported message,
-- applied when that user's mail is scored (every process replays them in lesson_id order)
CREATE TABLE user_lessons (
    lesson_id ${AUTOID},
    created   ${FLOAT} NOT NULL,
    user_name TEXT NOT NULL,
    digest    TEXT NOT NULL,
    label     TEXT NOT NULL,
    cols      ${BLOB} NOT NULL,
    delta     ${FLOAT} NOT NULL
);
CREATE INDEX user_lessons_user ON user_lessons (user_name);

-- one vote per user report; its message's near-duplicate bands (min-hash) find the votes
-- of other reporters about copies of the same campaign
CREATE TABLE feedback_votes (
    vote_id  ${AUTOID},
    created  ${FLOAT} NOT NULL,
    reporter TEXT NOT NULL,
    domain   TEXT NOT NULL,
    digest   TEXT NOT NULL,
    label    TEXT NOT NULL
);
CREATE INDEX feedback_votes_created ON feedback_votes (created);
CREATE TABLE vote_bands (
    band    TEXT NOT NULL,
    vote_id ${BIGINT} NOT NULL,
    created ${FLOAT} NOT NULL
);
CREATE INDEX vote_bands_band ON vote_bands (band, created);
CREATE INDEX vote_bands_created ON vote_bands (created);
