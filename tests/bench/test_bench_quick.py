"""CI smoke test of the benchmark: ``bench/run.py --quick`` runs every phase end to end and
reports numbers that make sense (docs/benchmarks.md).

It measures nothing against targets (a shared CI runner's numbers mean little); it checks that
the harness works: every service starts and stops, every request is answered, every phase
reports finite, positive latencies. It runs on embedded defaults (a temporary SQLite file, no
Redis) whatever the environment says, so that it never writes into a configured database.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PHASES = ("A", "B", "C", "D", "E", "F")


def _numbers(value: Any, path: str = "") -> list[tuple[str, float]]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [(path, float(value))]
    if isinstance(value, dict):
        return [item for key, inner in value.items() for item in _numbers(inner, f"{path}.{key}")]
    if isinstance(value, list):
        return [item for i, inner in enumerate(value) for item in _numbers(inner, f"{path}[{i}]")]
    return []


def _answered_all(run: dict[str, Any], name: str) -> None:
    assert run["sent"] > 0, name
    assert run["done"] == run["sent"], f"{name}: {run['done']} of {run['sent']} answered"
    assert run["lost"] == 0, name
    assert run["errors"] == {}, f"{name}: {run['errors']}"
    assert run["end_to_end"]["count"] == run["sent"], name
    assert run["end_to_end"]["p50_ms"] > 0, name


def test_quick_run_reports_every_phase(tmp_path: Path) -> None:
    # Given embedded defaults (no DATABASE_URL, no REDIS_URL)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    out = tmp_path / "r.json"

    # When the quick benchmark runs
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "bench/run.py", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    # Then it succeeds and writes every phase
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(PHASES) <= set(report["phases"])
    assert report["mode"] == "quick"
    assert report["machine"]["cores"] >= 1
    for path, number in _numbers(report):
        assert math.isfinite(number), path
    phases = report["phases"]

    # A: both echo servers answered every frame at every rate
    assert set(phases["A"]["rates"]) == {"50", "100"}
    for rate, kinds in phases["A"]["rates"].items():
        for kind in ("websockets", "channels"):
            _answered_all(kinds[kind], f"A {kind} {rate}/s")

    # B: every idle socket connected, stayed open, and cost some memory
    b = phases["B"]
    assert b["connected"] == b["target"] == 300
    assert b["still_open_after_idle"] == 300
    assert b["rss_kb_per_connection"] > 0
    assert b["connects_per_second"] > 0

    # C: every FAQ question got its FAQ answer: as many done frames as messages, no errors
    for rate, run in phases["C"]["rates"].items():
        _answered_all(run, f"C {rate}/s")
        assert run["sources"] == {"faq": run["sent"]}
        assert run["server_latency_ms"]["count"] == run["sent"]

    # D: every stream completed through the platform and directly, with token gaps measured
    for streams, run in phases["D"]["streams"].items():
        for side in ("direct", "platform"):
            _answered_all(run[side], f"D {side} {streams}")
            assert run[side]["first_delta"]["p50_ms"] > 0
            assert run[side]["tokens_per_second"] > 0
        assert set(run["platform"]["sources"]) <= {"rag", "llm"}
        assert run["platform"]["delta_gaps"]["count"] > 0

    # E: FAQ and LLM load together, all answered
    _answered_all(phases["E"]["faq"], "E faq")
    _answered_all(phases["E"]["llm"], "E llm")

    # F: moderation and retrieval timings
    moderation = phases["F"]["moderation"]
    assert moderation["words"] == 10_000
    for kind in ("scan_zh", "scan_en"):
        assert moderation[kind]["mean_us"] > 0
    for size, run in phases["F"]["retrieval"]["sizes"].items():
        for call in ("faq_scores", "faq_match", "knowledge_search"):
            assert run[call]["p99_us"] > 0, f"F {call} at {size}"

    # And the targets table has a row per target, judged or marked not at scale
    assert len(report["targets"]) == 10
    assert all(row["ok"] in (True, False, None) for row in report["targets"])
