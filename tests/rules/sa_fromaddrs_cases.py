"""Hand-written messages for the sender addresses SpamAssassin reads: WLBLEval's
``check_from_in_list`` on ``all_from_addrs`` (FROM_PAYPAL_SPOOF) and HeaderEval's
``check_for_matching_env_and_hdr_from`` on the envelope sender of ``get_envelope_from``
(``__ENV_AND_HDR_FROM_MATCH``, which TO_IN_SUBJ excludes), whose SpamAssassin 4.0.1 answers
are recorded in ``data/sa_fromaddrs.json`` (``python -m tests.rules.sa_fromaddrs_cases
--record PORT`` asks a ``spamd -L`` on 127.0.0.1:PORT through ``spamc -y`` and rewrites the
file)."""

from __future__ import annotations

from pathlib import Path

from .sa_record import main, record_hits

DATA = Path(__file__).parent / "data" / "sa_fromaddrs.json"
# the rules the cases are about; the recorded answers keep only these
RULES = ("FROM_PAYPAL_SPOOF", "TO_IN_SUBJ")

RECEIVED = (
    "Received: from mail.sender.example (mail.sender.example [203.0.113.5])\r\n"
    "\tby mx.example.net with ESMTP id 4A1B2C3D; Mon, 7 Dec 2026 10:00:05 +0000\r\n"
)
RECEIVED_ENVFROM = (
    "Received: from mail.sender.example (mail.sender.example [203.0.113.5])\r\n"
    "\tby mx.example.net with ESMTP id 4A1B2C3D\r\n"
    "\t(envelope-from <{env}>); Mon, 7 Dec 2026 10:00:05 +0000\r\n"
)
RECEIVED_FETCHMAIL = (
    "Received: from pop.example.net\r\n\tby localhost with POP3 (fetchmail-6.4.37)"
    " for <me@home.example>; Mon, 7 Dec 2026 10:00:09 +0000\r\n"
)


def message(top: str = "", received: str = RECEIVED, middle: str = "", **headers: str) -> bytes:
    """Headers ``top`` above the Received header(s), ``middle`` below them, then From
    (``headers["From"]``, else a PayPal address) and the rest (``_`` in a name for ``-``)."""
    frm = headers.pop("From", "service@paypal.com")
    subject = headers.pop("Subject", "Your account")
    head = top + received + middle + f"From: {frm}\r\nTo: jsmith@example.net\r\n"
    head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    head += (
        f"Subject: {subject}\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
        "Message-ID: <case@sender.example>\r\n"
    )
    return (head + "\r\nPlease read this notice about your account.\r\n").encode()


def cases() -> dict[str, bytes]:
    """name -> raw message."""
    to_in_subj = "jsmith@example.net: about your order"
    return {
        # the From address is on the PAYPAL list
        "from_paypal": message(),
        "from_other": message(From="alerts@bank.example"),
        # a Resent-From: only its address is read, From no longer
        "resent_from_other": message(Resent_From="fwd@example.org"),
        "resent_from_paypal": message(From="alerts@bank.example", Resent_From="pp@paypal.com"),
        # the envelope sender: a Return-Path above the Received headers counts
        "return_path_paypal": message(
            top="Return-Path: <bounce@paypal.com>\r\n", From="alerts@bank.example"
        ),
        # below a Received header it does not
        "return_path_after_received": message(
            middle="Return-Path: <bounce@paypal.com>\r\n", From="alerts@bank.example"
        ),
        # X-Envelope-From and Envelope-Sender are read wherever they are
        "x_envelope_from_paypal": message(
            middle="X-Envelope-From: <bounce@paypal.com>\r\n", From="alerts@bank.example"
        ),
        "envelope_sender_paypal": message(
            Envelope_Sender="bounce@paypal.com", From="alerts@bank.example"
        ),
        # the envelope-from the untrusted relay recorded
        "relay_envfrom_paypal": message(
            received=RECEIVED_ENVFROM.format(env="bounce@paypal.com"), From="alerts@bank.example"
        ),
        # the envelope sender equal to From (case aside): no TO_IN_SUBJ
        "env_matches_from": message(
            top="Return-Path: <Alerts@Bank.example>\r\n",
            From="alerts@bank.example",
            Subject=to_in_subj,
        ),
        "env_differs_from_from": message(
            top="Return-Path: <bounce@bank.example>\r\n",
            From="alerts@bank.example",
            Subject=to_in_subj,
        ),
        "relay_envfrom_matches_from": message(
            received=RECEIVED_ENVFROM.format(env="alerts@bank.example"),
            From="alerts@bank.example",
            Subject=to_in_subj,
        ),
        # the relay's envelope-from is read before Return-Path
        "relay_envfrom_before_return_path": message(
            top="Return-Path: <alerts@bank.example>\r\n",
            received=RECEIVED_ENVFROM.format(env="other@bank.example"),
            From="alerts@bank.example",
            Subject=to_in_subj,
        ),
        # a late X-Envelope-From ends the search: Return-Path is not read
        "late_x_envelope_from": message(
            top="Return-Path: <alerts@bank.example>\r\n",
            middle="X-Envelope-From: <alerts@bank.example>\r\n",
            From="alerts@bank.example",
            Subject=to_in_subj,
        ),
        # an X-Sender address with a fetchmail hop: no envelope sender
        "x_sender_fetchmail": message(
            top="Return-Path: <alerts@bank.example>\r\n",
            received=RECEIVED_FETCHMAIL + RECEIVED,
            From="alerts@bank.example",
            X_Sender="alerts@bank.example",
            Subject=to_in_subj,
        ),
        "no_envelope_sender": message(From="alerts@bank.example", Subject=to_in_subj),
    }


def record(port: int) -> None:
    record_hits(cases, RULES, DATA, port)


if __name__ == "__main__":
    main(__doc__, record)
