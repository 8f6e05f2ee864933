"""A conversation's thread parent that also carries its first message (one Slack post, not two).

Slack takes about one post per second per channel; a parent followed by the message as its first reply
halves how fast new conversations appear during a reply storm. The header (who, which number, window)
comes first so that `chat.update` can refresh it later while the message stays underneath.
"""

from __future__ import annotations

from bot.slack.limits import BLOCKS_PER_MESSAGE, MESSAGE_BLOCK_TEXT, block_text_length, summary
from bot.slack.render import Post

_DIVIDER = {"type": "divider"}


def opening_parent(header: Post, first: Post) -> Post | None:
    """The header and the first message as one post; None when they would not fit in one Slack message."""
    blocks = [*header.blocks, _DIVIDER, *first.blocks]
    if len(blocks) > BLOCKS_PER_MESSAGE or sum(block_text_length(b) for b in blocks) > MESSAGE_BLOCK_TEXT:
        return None
    # Posted as the app, not as the customer: chat.update cannot change the author when the name changes.
    return Post(text=summary(f"{header.text}\n{first.text}"), blocks=blocks)
