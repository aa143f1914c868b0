"""Hand-written test messages for the classifier tests (no corpus messages copied)."""

from __future__ import annotations

PERSONAL = b"""From: Bob Smith <bob@example.org>
To: Alice Jones <alice@example.com>
Subject: Re: lunch on Thursday
Date: Tue, 10 Sep 2002 12:01:02 +0100
Message-ID: <20020910120102.GA1234@example.org>
In-Reply-To: <3D7DCE2A.5060405@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii
User-Agent: Mutt/1.4i

On Mon, Sep 09, 2002 at 05:12:44PM +0100, Alice Jones wrote:
> Are we still on for lunch on Thursday?

Yes, Thursday works for me. I was thinking of the Italian place near the
office around half twelve, unless you would rather try the new noodle bar.
I will bring the printouts of the build logs so we can look at the failing
test together afterwards.

Cheers,
Bob
"""

SPAMMY = b"""From: "Best Deals" <deals4u@cheap-meds-online.biz>
To: undisclosed-recipients:;
Subject: FREE!!! Make $$$ FAST - LIMITED TIME OFFER
Date: Tue, 10 Sep 2002 03:01:02 -0500
MIME-Version: 1.0
Content-Type: text/html; charset=iso-8859-1

<html><body><p><font size=5 color=red>MAKE MONEY FAST!!!</font></p>
<p>Dear Friend, you have been SELECTED to receive our exclusive offer.
Earn $5000 a week from home. No experience needed. 100% GUARANTEED!</p>
<p><a href="http://198.51.100.23/click.php?id=99812">CLICK HERE NOW</a> to claim your
FREE gift. This is a one-time offer, act now before it expires!</p>
<p>To be removed from our mailing list <a href="http://198.51.100.23/remove.php">click here</a>.
</p></body></html>
"""

GTUBE_MESSAGE = b"""From: tester@example.org
To: alice@example.com
Subject: test

This is the GTUBE, the
\tGeneric
\tTest for
\tUnsolicited
\tBulk
\tEmail

XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X
"""


def with_header(raw: bytes, header: bytes) -> bytes:
    """Insert a header line at the top of the header block."""
    return header.rstrip(b"\r\n") + b"\n" + raw
