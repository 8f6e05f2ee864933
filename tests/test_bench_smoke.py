"""The benchmarks still run: each bench's main at its smallest size (a few seconds each, no timing asserted)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _row(out: str, first_cell: str) -> dict[str, str]:
    """One row of the Markdown table a bench printed, by its first cell, as {header: cell}."""
    lines = [line for line in out.splitlines() if line.startswith("|")]
    headers = [c.strip() for c in lines[0].split("|")[1:-1]]
    for line in lines[2:]:
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if cells[0] == first_cell:
            return dict(zip(headers, cells, strict=True))
    raise AssertionError(f"no row {first_cell!r} in:\n{out}")


def test_ingest_bench_prints_serve_and_bare_rates(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import ingest

    assert ingest.main(["--rates", "40", "--seconds", "0.5", "--drain-wait", "1"]) == 0
    row = _row(capsys.readouterr().out, "40")
    assert row["errors"] == "0" and float(row["ratio"]) > 0


def test_mirror_latency_bench_matches_posts_to_webhooks(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import mirror_latency

    assert mirror_latency.main(["--rates", "4", "--conversations", "2", "--seconds", "1",
                                "--max-rate-messages", "12", "--max-rate-channels", "3"]) == 0
    out = capsys.readouterr().out
    row = _row(out, "webhook -> Slack post")
    assert row["n"] == "4" and row["not mirrored"] == "0"
    assert "(12 of 12 offered" in out and "over 3 channels" in out and "0 not mirrored" in out


def test_campaign_throughput_bench_sends_a_campaign_created_by_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import campaign_throughput

    assert campaign_throughput.main(["--mps", "5", "--processes", "1", "--slow-seconds", "1"]) == 0
    row = _row(capsys.readouterr().out, "1")
    assert row["sent"] == row["recipients"] == "6"
    assert row["twice"] == "0" and int(row["max 1-s window"]) <= 5


def test_audience_scale_bench_imports_a_generated_csv(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import audience_scale

    assert audience_scale.main(["--sizes", "300", "--stages", "csv.reader", "import"]) == 0
    out = capsys.readouterr().out
    imported = [line for line in out.splitlines() if "import (postgres)" in line]
    assert len(imported) == 1 and "csv.reader" in out


def test_insights_bench_computes_the_weeks_figures(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import insights

    assert insights.main(["--conversations", "20", "--messages", "4", "--repeat", "1"]) == 0
    row = _row(capsys.readouterr().out, "postgres")
    assert row["conversations"] == "20" and row["messages"] == "80"


def test_reply_storm_bench_posts_every_reply_once(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import reply_storm

    assert reply_storm.main(["--customers", "3", "--messages", "2"]) == 0
    row = _row(capsys.readouterr().out, "3")
    assert row["messages"] == "6" and row["lost"] == row["doubled"] == row["out of order"] == "0"


def test_status_storm_bench_applies_every_status_of_a_small_campaign(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import status_storm

    assert status_storm.main(["--recipients", "20", "--mps", "10", "--baseline-seconds", "1",
                              "--live-interval", "0.5"]) == 0
    out = capsys.readouterr().out
    baseline, storm = _row(out, "baseline (no campaign)"), _row(out, "storm at 10 mps")
    assert baseline["n"] == "2" and baseline["errors"] == "0"
    assert storm["statuses"] == "60" and storm["n"] == "4" and storm["errors"] == "0"


def test_status_storm_bench_runs_retention_during_the_storm(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import status_storm

    assert status_storm.main(["--recipients", "20", "--mps", "10", "--baseline-seconds", "1",
                              "--live-interval", "0.5", "--with-retention", "2500"]) == 0
    storm = _row(capsys.readouterr().out, "storm at 10 mps")
    assert storm["retention rows"] == "2,500" and storm["statuses"] == "60" and storm["errors"] == "0"
    assert storm["posts redacted"].replace(",", "").isdigit()  # the posts' redaction ran alongside (paced)


def test_status_storm_drain_mode_applies_a_stored_backlog(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import status_storm

    assert status_storm.main(["--drain", "200"]) == 0
    row = _row(capsys.readouterr().out, "200")
    assert float(row["statements/delivery"]) > 0


def test_send_cpu_bench_measures_both_clients(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import send_cpu

    assert send_cpu.main(["--sends", "20", "--concurrency", "2"]) == 0
    out = capsys.readouterr().out
    assert "general Graph client (httpx)" in out and "pooled template sender (aiohttp)" in out


def test_workspaces_fairness_bench_mirrors_other_workspaces_during_a_campaign(
        capsys: pytest.CaptureFixture[str]) -> None:
    from bench import workspaces_fairness

    assert workspaces_fairness.main(["--workspaces", "3", "--rate", "4", "--seconds", "1",
                                     "--campaign-seconds", "0.5"]) == 0
    out = capsys.readouterr().out
    quiet, row = _row(out, "no storm (baseline)"), _row(out, "workspace 0 at 80 mps")
    assert quiet["n"] == "4" and quiet["not mirrored"] == "0" and quiet["ratio p99"] == "1.000"
    assert row["n"] == "4" and row["not mirrored"] == "0" and row["errors"] == "0"
    assert float(row["ratio p99"]) > 0 and int(row["campaign sends"]) >= 40


def test_search_bench_times_every_kind_of_search(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import search

    assert search.main(["--messages", "2000", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert _row(out, "all searches")["runs"] == "18" and _row(out, "rare word")["messages"] == "2,000"


def test_scale_out_bench_runs_each_layout_to_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import scale_out

    assert scale_out.main(["--workers", "1", "2", "--web", "1", "--deliveries", "40", "--channels", "4",
                           "--offered", "100"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("|")]
    headers = [c.strip() for c in lines[0].split("|")[1:-1]]
    rows = [dict(zip(headers, [c.strip() for c in line.split("|")[1:-1]], strict=True)) for line in lines[2:]]
    assert [r["workers"] for r in rows] == ["x1", "x2"]
    for row in rows:
        assert row["deliveries"] == "40" and row["not applied"] == "0" and row["not mirrored"] == "0"


def test_outbox_claim_bench_claims_heads_with_stale_and_fresh_statistics(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import outbox_claim

    assert outbox_claim.main(["--pending", "200", "--claims", "2"]) == 0
    out = capsys.readouterr().out
    for path in ("claim, statistics from before the burst", "claim, statistics after ANALYZE",
                 "heads, correlated NOT EXISTS (before 0.7.0), statistics after ANALYZE"):
        assert _row(out, path)["heads"] == "32" and _row(out, path)["n"] == "2"
