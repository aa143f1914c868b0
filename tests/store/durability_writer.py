"""Child process of the kill -9 test: records verdicts and feedback, acking each commit.

Usage: python -m tests.store.durability_writer STORE_URL
Prints "ok <verdict id>" after the verdict (+ a feedback report and a learn event for every
third one) is committed, flushing stdout, and keeps going until killed.
"""

from __future__ import annotations

import sys
import uuid

from mailsift.store import FeedbackRecord, VerdictRecord, open_store


def main(url: str) -> None:
    store = open_store(url)
    run = uuid.uuid4().hex[:6]
    i = 0
    while True:
        vid = f"{run}-{i}"
        digest = f"{i:064x}"
        store.verdicts.add(
            VerdictRecord(vid, digest, 1.0, 0.3, "ham", "m", recipients=("a@x.test",)),
            sample=b"Subject: s\r\n\r\nbody %d\r\n" % i,
        )
        if i % 3 == 0:
            with store.transaction():
                store.feedback.keep_message(digest, b"raw %d" % i)
                store.feedback.teach(digest, "spam", 1.0)
                store.feedback.add(FeedbackRecord("spam", "u", digest, vid, status="learned"))
        sys.stdout.write(f"ok {vid}\n")
        sys.stdout.flush()
        i += 1


if __name__ == "__main__":
    main(sys.argv[1])
