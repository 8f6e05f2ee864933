"""What a shop owner is told when Facebook's sign-in code cannot be turned into a token (pure).

Three different situations need three different answers: the owner stopped or took too long (try
again), the code had already been used (reload), or our server could not reach Meta (nothing the owner
did; try again later). One sentence for all of them sent people round in circles.
"""

from __future__ import annotations

from bot.meta.errors import GraphError

UNREACHABLE = ("Our server could not reach Facebook just now, so your number is not connected yet. "
               "This is not something you did: please try again in a few minutes.")
EXPIRED = ("The Facebook sign-in took too long and expired before we could use it. Please press "
           "“Connect WhatsApp” and go through the Facebook window again without a long pause.")
USED = ("This Facebook sign-in was already used. Please reload this page and press “Connect WhatsApp” again.")
REFUSED = ("Facebook did not accept the sign-in. Please press “Connect WhatsApp” again and finish every "
           "step in the Facebook window.")


def token_failure_message(exc: GraphError) -> str:
    """The owner-facing sentence for a failed code exchange."""
    if exc.code is None or (exc.http_status is not None and exc.http_status >= 500) or exc.code in (1, 2):
        return UNREACHABLE
    # Meta answers both with OAuthException #100 and tells them apart only in words:
    # "This authorization code has expired." / "This authorization code has been used."
    text = f"{exc.message} {exc.details or ''}".lower()
    if "expired" in text:
        return EXPIRED
    if "been used" in text:
        return USED
    return REFUSED
