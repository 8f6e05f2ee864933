"""A storm of posts into one workspace's channel never holds the outbox's slots while they wait for Slack's
one post per second: another workspace's customer message goes out before the storm's next few posts."""

from __future__ import annotations

from typing import Any

from tests.harness import eventually
from tests.workspaces_harness import ALPHA, BETA, deployment_of

STORM = 20  # Alpha's customers, each opening a thread in Alpha's one channel (Slack takes one post a second)


def _ts(message: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(p) for p in str(message["ts"]).split("."))


async def test_a_storm_waiting_for_its_channel_leaves_the_outbox_to_other_workspaces(
        db_url: str, aiohttp_client: Any) -> None:
    async with deployment_of(aiohttp_client, db_url) as d:
        assert await d.install("T0ALPHA") == 200 and await d.install("T0BETA") == 200
        for n in range(STORM):
            await d.customer_writes(ALPHA, f"wamid.S{n}", f"storm question {n}", wa_id=f"9198100000{n:02d}",
                                    name=f"Customer {n}")
        await eventually(lambda: len(d.posts(ALPHA)) >= 1)  # the storm is being posted
        await d.customer_writes(BETA, "wamid.Q1", "is the clinic open today?")
        quiet = await eventually(lambda: [m for m in d.posts(BETA) if "clinic open" in str(m)], timeout=40)
        before = [m for m in d.posts(ALPHA) if _ts(m) < _ts(quiet[0])]
        # Beta's customer waited for at most a few of the storm's posts, not for the storm.
        assert len(before) <= 4, f"{len(before)} of Alpha's posts went first"
        await eventually(lambda: sum("storm question" in str(m) for m in d.posts(ALPHA)) == STORM, timeout=60)
