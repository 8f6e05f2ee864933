"""`wabridge demo --workspaces 2`: two businesses side by side, installed through OAuth, isolated."""

from __future__ import annotations

import io

from bot.cli.demo_workspaces import run_workspaces_demo


async def test_two_businesses_install_stay_apart_and_survive_an_uninstall() -> None:
    out = io.StringIO()
    result = await run_workspaces_demo(out, 2)
    assert result.installed == ["T0SHOP1", "T0SHOP2"]
    assert result.leaks == 0 and not result.forged_reply_sent and result.held_then_delivered
    text = out.getvalue()
    assert "#shop1 in T0SHOP1 shows: 'Hello shop1!'" in text and "#shop2 in T0SHOP2 shows: 'Hello shop2!'" in text
    assert "leaks between workspaces: 0" in text
