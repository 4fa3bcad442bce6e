"""Smoke test of the benchmark's analytics phase (H): ``bench/run.py --quick --phases H`` with a
tiny history on a scratch PostgreSQL database of its own, end to end (docs/benchmarks.md).

It asserts no target; it checks that the phase seeds (or reuses) its history, times a day's
rollup, renders every dashboard page that exists and the reports API, and lists the pages that
do not exist yet. The benchmark's other data goes to a temporary SQLite file, as in the quick
smoke test, so nothing is written into the configured database.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.load_analytics import PAGES
from tests.support.services import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
CONVERSATIONS = 300


def test_analytics_phase_runs_on_its_own_database(tmp_path: Path) -> None:
    # Given PostgreSQL (phase H needs it) and a scratch database beside the configured one
    url = os.environ.get("DATABASE_URL", "")
    if not urlsplit(url).scheme.startswith("postgres"):
        skip_or_fail("DATABASE_URL is not PostgreSQL: phase H runs on PostgreSQL only")
    parts = urlsplit(url)
    scratch = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "_bench_h"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    out = tmp_path / "h.json"

    # When the phase runs with a tiny history
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [
            sys.executable,
            "bench/run.py",
            "--quick",
            "--phases",
            "H",
            "--analytics-database",
            scratch,
            "--analytics-conversations",
            str(CONVERSATIONS),
            "--analytics-requests",
            "2",
            "--analytics-topics",
            "0",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    # Then it reports the seeding, a day's rollup, the pages and the API
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    h = report["phases"]["H"]
    assert h["seed"]["conversations"] == CONVERSATIONS
    assert h["seed"]["messages"] > CONVERSATIONS
    assert h["day_rollup"]["seconds"] > 0
    assert h["day_rollup"]["report_rows"] >= h["day_rollup"]["messages"] > 0
    measured, missing = h["pages"]["measured"], h["pages"]["missing"]
    assert set(missing) <= set(PAGES)
    for name in PAGES:
        assert (name in missing) != (f"{name} 30d" in measured), name
    for name in ("api:reports/summary", "api:reports/timeseries"):
        for days in (30, 90):
            run = measured[f"{name} {days}d"]
            assert run["statuses"] == {"200": 2}, (name, run)
            assert run["p95_ms"] > 0
    for name, run in measured.items():
        assert run["statuses"] == {"200": 2}, (name, run)
    rows = [row for row in report["targets"] if row["phase"] == "H"]
    assert len(rows) == 3
    assert all(row["ok"] is None for row in rows)  # not at the targets' scale
    assert "H. Analytics at scale" in result.stdout
