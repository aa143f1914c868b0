"""Replies of SpamAssassin 4.0.1's own ``spamd`` (Debian 12), captured on loopback with
``spamd -L --allow-tell`` and the requests named here, for comparison with mailsift's. The
message was a GTUBE test message (spam) or a short personal note (ham)."""

CHECK_GTUBE = b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1000.0 / 5.0\r\n\r\n"
CHECK_HAM = b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; -0.0 / 5.0\r\n\r\n"
SYMBOLS_GTUBE = (
    b"SPAMD/1.1 0 EX_OK\r\nContent-length: 55\r\nSpam: True ; 1000.0 / 5.0\r\n\r\n"
    b"GTUBE,MSGID_SHORT,NO_RECEIVED,NO_RELAYS,TVD_SPACE_RATIO"
)
REPORT_IFSPAM_HAM = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: No ; -0.0 / 5.0\r\n\r\n"
# REPORT SPAMC/1.5 on GTUBE: status line, Content-length, Spam line, then the report text
REPORT_GTUBE_HEAD = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 878\r\nSpam: True ; 1000.0 / 5.0\r\n\r\n"
REPORT_GTUBE_TABLE = (
    b"Content analysis details:   (1000.0 points, 5.0 required)\n\n"
    b" pts rule name              description\n"
    b"---- ---------------------- --------------------------------------------------\n"
)
REPORT_GTUBE_LINE = b"1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email\n"
# HEADERS / PROCESS SPAMC/1.5 on the ham: status line, Content-length, Spam line, message
PROCESS_HAM_HEAD = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 410\r\nSpam: False ; -0.0 / 5.0\r\n\r\n"
# older protocol versions
SYMBOLS_GTUBE_V12 = (
    b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1000.0 / 5.0\r\n\r\n"
    b"GTUBE,MSGID_SHORT,NO_RECEIVED,NO_RELAYS,TVD_SPACE_RATIO\r\n"
)
CHECK_GTUBE_V10 = b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1000.0 / 5.0\r\n\r\n"
PROCESS_V11_HEAD = b"SPAMD/1.0 0 EX_OK\r\n"
# TELL SPAMC/1.5, Message-class: spam, Set: local: learned, then the same message again
TELL_LEARNED = b"SPAMD/1.1 0 EX_OK\r\nDidSet: local\r\n\r\n\r\n"
TELL_ALREADY = b"SPAMD/1.1 0 EX_OK\r\n\r\n\r\n"
PONG = b"SPAMD/1.5 0 PONG\r\n"
# malformed requests
ERRORS = {
    b"FOO SPAMC/1.5\r\n\r\n": b"SPAMD/1.0 76 Bad header line: FOO SPAMC/1.5\r\n",
    b"CHECK SPAMC/1.5\r\nBadheader\r\n\r\n": (
        b"SPAMD/1.0 76 Bad header line: (header not in 'Name: value' format)\r\n"
    ),
    b"CHECK SPAMC/1.5\r\nContent-length: abc\r\n\r\n": (
        b"SPAMD/1.0 76 Bad header line: (Content-Length contains non-numeric bytes)\r\n"
    ),
    b"CHECK SPAMC/1.5\r\nContent-length: 500\r\n\r\nhello\r\n": (
        b"SPAMD/1.0 76 Bad header line: "
        b"(Content-Length mismatch: Expected 500 bytes, got 7 bytes)\r\n"
    ),
    b"CHECK SPAMC/1.5\r\nCompress: gzip\r\n\r\nhello\r\n": (
        b"SPAMD/1.0 76 Bad header line: (compression type not supported: gzip)\r\n"
    ),
    b"CHECK SPAMC/1.5\r\nUser: a\x01b\r\n\r\n": (
        b"SPAMD/1.0 76 Bad header line: (User header contains control chars)\r\n"
    ),
    b"CHECK SPAMC/1.5\r\n": b"SPAMD/1.0 76 Bad header line: (EOF during headers)\r\n",
    b"": b"SPAMD/1.0 76 Bad header line: (closed before headers)\r\n",
}
