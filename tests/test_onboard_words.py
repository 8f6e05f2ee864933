"""What the shop owner is told when Facebook's sign-in cannot be used: one answer per situation."""

from __future__ import annotations

from bot.meta.errors import GraphError
from bot.onboarding.signin import EXPIRED, REFUSED, UNREACHABLE, USED, token_failure_message


def test_each_failed_sign_in_gets_its_own_words() -> None:
    assert token_failure_message(GraphError(None, None, message="connection refused")) == UNREACHABLE
    assert token_failure_message(GraphError(503, 2, message="Service temporarily unavailable")) == UNREACHABLE
    assert token_failure_message(GraphError(400, 100, message="This authorization code has expired.")) == EXPIRED
    assert token_failure_message(GraphError(400, 100, message="This authorization code has been used.")) == USED
    assert token_failure_message(GraphError(400, 100, 36007, message="Invalid verification code format.")) == REFUSED
    assert len({UNREACHABLE, EXPIRED, USED, REFUSED}) == 4
