"""SpamAssassin's spamd protocol in front of mailsift's scorer (``mailsift serve spamd``):
``protocol`` reads requests and writes spamd 4.0's replies, ``server`` serves them over
``mailsift.service.ScoringService``."""
