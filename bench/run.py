"""Kefu's speed and scale benchmark: one command, every phase, one table, one JSON file.

    python bench/run.py [--quick] [--out bench/results.json] [--profile DIR]

Starts what it measures as subprocesses (the app under uvicorn on one core; the load generator,
this process, with the mock LLM on another) and always stops them. Results are set against
what the machine itself can do: an echo server's latency (phase A), the mock LLM's own
first-token time. With ``DATABASE_URL``/``REDIS_URL`` in the environment the app runs on them;
otherwise on a temporary SQLite file and in-process layers. docs/benchmarks.md explains the
phases, the targets and the latest results.
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import load_phases as phases  # noqa: E402
from bench.banking77 import DEFAULT_CSV  # noqa: E402
from bench.load_procs import (  # noqa: E402
    PYTHON,
    Cores,
    Services,
    free_port,
    machine_info,
    run_checked,
)

DEFAULT_OUT = ROOT / "bench" / "results.json"
PHASES = "ABCDEFGH"
DEFAULT_PHASES = "ABCDEFG"  # H (analytics at scale) seeds a database of its own: asked for by name
ANALYTICS_CONVERSATIONS = {"full": 1_000_000, "quick": 3_000}
RATE_LIMITS = {
    "RATE_LIMIT_TENANT": "1000000/60",
    "RATE_LIMIT_VISITOR": "100000/60",
    "API_RATE_LIMIT": "100000000/60",
}
# Sockets the generator needs beyond the phases' own: the mock's, the logs', some slack.
FD_SLACK = 1_000


# --- Preparation ----------------------------------------------------------------------------


def fd_limit_raise(wanted: int) -> dict[str, int]:
    """Raises this process's open-file limit (children inherit it) towards ``wanted``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"soft": soft, "hard": hard, "wanted": wanted}


def postgres_database_ensure(url: str) -> None:
    """Creates the benchmark's PostgreSQL database when it does not exist yet. Nothing is ever
    dropped: point DATABASE_URL at a scratch database (the run writes visitors and messages)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def bench_env(workdir: Path, settings: str = "helpdesk_site.settings.base") -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = settings
    env.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}")
    env.update(RATE_LIMITS)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def versions() -> dict[str, str]:
    found = {}
    for package in ("django", "channels", "channels-redis", "uvicorn", "websockets", "openai"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


GIT = [shutil.which("git") or "git"]


def _git(*args: str) -> str:
    return subprocess.run(  # noqa: S603 - git with fixed arguments
        [*GIT, *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def git_commit() -> str:
    """The commit measured, with "+dirty" when the code under test (anything outside bench/ and
    docs/) differs from it."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git(
            "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench", ":!docs"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


# --- Targets --------------------------------------------------------------------------------


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _target(
    phase: str,
    name: str,
    measured: float | None,
    limit: float,
    *,
    at: str,
    reached: bool,
    higher_is_better: bool = False,
    unit: str = "",
) -> dict[str, Any]:
    """``reached``: the run measured at the target's scale; if not, the target is not judged
    (quick mode) and the row shows what was measured instead."""
    if measured is None or not reached:
        ok = None
    else:
        ok = measured >= limit if higher_is_better else measured <= limit
    return {
        "phase": phase,
        "target": name,
        "measured": None if measured is None else round(measured, 3),
        "limit": limit,
        "unit": unit,
        "at": at,
        "ok": ok,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    b = results["phases"].get("B", {})
    connected = b.get("still_open_after_idle")
    rows.append(
        _target(
            "B",
            "idle connections per process >= 10,000",
            connected,
            10_000,
            at=f"N = {b.get('target')}",
            reached=b.get("target", 0) >= 10_000,
            higher_is_better=True,
        )
    )
    rows.append(
        _target(
            "B",
            "memory per idle connection <= 40 KB",
            b.get("rss_kb_per_connection"),
            40,
            at=f"N = {b.get('connected')}",
            reached=b.get("target", 0) >= 10_000,
            unit="KB",
        )
    )
    c = results["phases"].get("C", {}).get("rates", {})
    top = max(c, key=int) if c else None
    rows.append(
        _target(
            "C",
            "FAQ end-to-end p99 <= 15 ms at 500 msg/s",
            _get(c, "500", "end_to_end", "p99_ms") or _get(c, top or "", "end_to_end", "p99_ms"),
            15,
            at=f"{'500' if '500' in c else top} msg/s",
            reached="500" in c,
            unit="ms",
        )
    )
    ratio_rate = "500" if "500" in c else top
    rows.append(
        _target(
            "C",
            "FAQ median / Channels-echo median <= 2",
            _get(results, "ratios", "faq_vs_channels_echo", ratio_rate or ""),
            2,
            at=f"{ratio_rate} msg/s",
            reached="500" in c,
        )
    )
    d = results["phases"].get("D", {}).get("streams", {})
    top_streams = "200" if "200" in d else (max(d, key=int) if d else "")
    for key, limit in (("p50", 5), ("p99", 20)):
        rows.append(
            _target(
                "D",
                f"LLM first-token overhead {key} <= {limit} ms at 200 streams",
                _get(d, top_streams, "ttft_overhead_ms", key),
                limit,
                at=f"{top_streams} streams",
                reached="200" in d,
                unit="ms",
            )
        )
    e = results["phases"].get("E", {})
    rows.append(
        _target(
            "E",
            "mixed-load FAQ p99 <= 2x phase C p99",
            _get(results, "ratios", "mixed_faq_p99_vs_c"),
            2,
            at=f"{e.get('faq_rate')} msg/s",
            reached=str(e.get("faq_rate")) in c,
        )
    )
    f = results["phases"].get("F", {})
    scans = [_get(f, "moderation", kind, "p50_us") for kind in ("scan_zh", "scan_en")]
    rows.append(
        _target(
            "F",
            "moderation <= 5 us per 200-char message (10k words)",
            max(s for s in scans if s is not None) if any(scans) else None,
            5,
            at="worse of zh/en, median",
            reached=bool(f),
            unit="us",
        )
    )
    for call in ("faq_match", "knowledge_search"):
        rows.append(
            _target(
                "F",
                f"{call} p99 <= 2 ms at 10k entries",
                _get(f, "retrieval", "sizes", "10000", call, "p99_us"),
                2_000,
                at="10k entries",
                reached=_get(f, "retrieval", "sizes", "10000") is not None,
                unit="us",
            )
        )
    h = results["phases"].get("H", {})
    if h:
        seeded = _get(h, "seed", "conversations") or 0
        at_scale = seeded >= 1_000_000
        rows.append(
            _target(
                "H",
                "dashboard pages p95 <= 200 ms (worst page, 30/90 days)",
                _get(h, "pages", "worst_page_p95_ms"),
                200,
                at=f"{seeded:,} conversations",
                reached=at_scale,
                unit="ms",
            )
        )
        rows.append(
            _target(
                "H",
                "one day's rollup <= 60 s",
                _get(h, "day_rollup", "seconds"),
                60,
                at=f"{_get(h, 'day_rollup', 'messages') or 0:,} messages",
                reached=(_get(h, "day_rollup", "messages") or 0) >= 200_000,
                unit="s",
            )
        )
        rows.append(
            _target(
                "H",
                "hot topics on 100k questions <= 300 s",
                _get(h, "topics", "seconds"),
                300,
                at=f"{_get(h, 'topics', 'questions') or 0:,} questions",
                reached=(_get(h, "topics", "questions") or 0) >= 100_000,
                unit="s",
            )
        )
    return rows


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    a = results["phases"].get("A", {}).get("rates", {})
    c = results["phases"].get("C", {}).get("rates", {})
    out: dict[str, Any] = {"faq_vs_channels_echo": {}, "faq_vs_websockets_echo": {}}
    for rate, run in c.items():
        faq = _get(run, "end_to_end", "p50_ms")
        for kind in ("channels", "websockets"):
            echo = _get(a, rate, kind, "end_to_end", "p50_ms")
            if faq and echo:
                out[f"faq_vs_{kind}_echo"][rate] = round(faq / echo, 2)
    # Headless chat (G) against the widget (C, D) in the same run: medians.
    g = results["phases"].get("G", {})
    d = results["phases"].get("D", {}).get("streams", {})
    out["api_faq_vs_widget"] = {
        rate: round(api / widget, 2)
        for rate, run in g.get("faq", {}).items()
        if (api := _get(run, "end_to_end", "p50_ms"))
        and (widget := _get(c, rate, "end_to_end", "p50_ms"))
    }
    out["api_stream_first_delta_vs_widget"] = {
        streams: round(api / widget, 2)
        for streams, run in g.get("streams", {}).items()
        if (api := _get(run, "first_delta", "p50_ms"))
        and (widget := _get(d, streams, "platform", "first_delta", "p50_ms"))
    }
    e = results["phases"].get("E", {})
    base = _get(c, str(e.get("faq_rate")), "end_to_end", "p99_ms")
    mixed = _get(e, "faq", "end_to_end", "p99_ms")
    if base and mixed:
        out["mixed_faq_p99_vs_c"] = round(mixed / base, 2)
    return out


# --- The table ------------------------------------------------------------------------------


def _ms(summary: dict[str, Any] | None, *keys: str) -> str:
    if not summary or not summary.get("count"):
        return "-"
    return " / ".join(_num(summary.get(f"{key}_ms")) for key in keys)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def table(results: dict[str, Any]) -> str:
    m, p = results["machine"], results["phases"]
    cfg = results["config"]
    lines = [
        f"Kefu benchmark ({results['mode']}), {results['timestamp']}, "
        f"commit {cfg.get('commit', '?')}",
        f"{m['cpu_model']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}; "
        f"database {cfg['database']}, Redis {'yes' if cfg['redis'] else 'no'}; "
        f"server on cores {cfg['cores']['server']}, "
        f"generator + mock LLM on {cfg['cores']['load']}; load average {m['load_average_start']}",
        "Latencies in ms from the scheduled send (open loop): p50 / p99 / p99.9. CPU in % of "
        "one core: the server (its event loop + worker threads), PostgreSQL, the machine.",
    ]
    if "A" in p:
        lines += ["", f"A. Ceiling: JSON echo over {p['A']['sockets']} sockets"]
        lines.append(f"  {'rate/s':>7}  {'websockets echo':>22}  {'Channels echo':>22}  server CPU")
        for rate, kinds in p["A"]["rates"].items():
            ws, ch = kinds.get("websockets", {}), kinds.get("channels", {})
            lines.append(
                f"  {rate:>7}  {_ms(ws.get('end_to_end'), 'p50', 'p99', 'p999'):>22}  "
                f"{_ms(ch.get('end_to_end'), 'p50', 'p99', 'p999'):>22}  "
                f"{_num(ws.get('server_cpu_percent'))}% / {_num(ch.get('server_cpu_percent'))}%"
            )
        lines += _closures(p["A"].get("closed_by_server"))
    if "B" in p:
        b = p["B"]
        redis = [b[k]["redis"] for k in ("before", "during", "after_close")]
        redis_text = (
            " -> ".join(f"{r['client_list']} ({r['server_process']} ours)" for r in redis)
            if all(redis)
            else "not used"
        )
        lines += [
            "",
            "B. Idle capacity (hello, welcome, silence)",
            f"  connected {b['connected']} of {b['target']} ({b['failed']} failed"
            f"{', ' + json.dumps(b['failures']) if b['failures'] else ''}), "
            f"{b['still_open_after_idle']} still open after the idle window",
            f"  connect rate {_num(b['connects_per_second'])}/s; handshake+hello "
            f"{_ms(b['handshake'], 'p50', 'p99')}",
            f"  RSS {b['before']['rss_kb'] / 1024:.0f} -> {b['during']['rss_kb'] / 1024:.0f} MB: "
            f"{_num(b['rss_kb_per_connection'])} KB per connection; after close "
            f"{b['after_close']['rss_kb'] / 1024:.0f} MB",
            f"  idle CPU {_num(b['idle_cpu_percent'])}% of a core over {b['idle_cpu_seconds']} s",
            f"  Redis clients before -> during -> after: {redis_text}",
        ]
    if "C" in p:
        ratio = results["ratios"]["faq_vs_channels_echo"]
        ratio_ws = results["ratios"]["faq_vs_websockets_echo"]
        lines += ["", f"C. FAQ path over {p['C']['sockets']} sockets"]
        lines.append(
            f"  {'rate/s':>7}  {'sent/done':>11}  {'end-to-end':>22}  {'server ms p50/p99':>17}"
            f"  {'x Channels/ws echo':>18}  server CPU"
        )
        for rate, run in p["C"]["rates"].items():
            lines.append(
                f"  {rate:>7}  {run['sent']:>5}/{run['done']:<5}  "
                f"{_ms(run['end_to_end'], 'p50', 'p99', 'p999'):>22}  "
                f"{_ms(run['server_latency_ms'], 'p50', 'p99'):>17}  "
                f"{_num(ratio.get(rate)):>9} / {_num(ratio_ws.get(rate)):<6}  "
                f"{_cpu(run)}"
                + (f"  errors {run['errors']}" if run["errors"] or run["lost"] else "")
            )
        lines += _closures(p["C"].get("closed_by_server"))
    if "D" in p:
        d = p["D"]
        lines += [
            "",
            f"D. LLM path: mock LLM {d['ttft_ms']} ms to first token, {d['token_ms']} ms/token, "
            f"{d['answer_tokens']} tokens",
            f"  {'streams':>7}  {'TTFT direct p50/p99':>19}  {'TTFT platform p50/p99':>21}  "
            f"{'overhead p50/p99':>16}  {'gap-20ms p50/p99':>16}  {'tokens/s':>8}  server CPU",
        ]
        for streams, run in d["streams"].items():
            direct, plat = run["direct"], run["platform"]
            gap = plat.get("gap_minus_token_ms", {})
            overhead = run["ttft_overhead_ms"]
            lines.append(
                f"  {streams:>7}  {_ms(direct['first_delta'], 'p50', 'p99'):>19}  "
                f"{_ms(plat['first_delta'], 'p50', 'p99'):>21}  "
                f"{_num(overhead['p50'])} / {_num(overhead['p99']):<7}  "
                f"{_num(gap.get('p50_ms'))} / {_num(gap.get('p99_ms')):<8}  "
                f"{_num(plat['tokens_per_second']):>8}  {_cpu(plat)}"
                + (
                    f"  errors {plat['errors']} lost {plat['lost']}"
                    if plat["errors"] or plat["lost"]
                    else ""
                )
            )
        lines += _closures(d.get("closed_by_server"))
    if "E" in p:
        e = p["E"]
        lines += [
            "",
            f"E. Mixed: {e['idle_sockets']} idle sockets + {e['llm_streams']} LLM streams + FAQ "
            f"at {e['faq_rate']}/s",
            f"  FAQ end-to-end {_ms(e['faq']['end_to_end'], 'p50', 'p99', 'p999')} "
            f"({_num(results['ratios'].get('mixed_faq_p99_vs_c'))}x phase C p99); "
            f"LLM TTFT {_ms(e['llm']['first_delta'], 'p50', 'p99')}; "
            f"server CPU {_cpu(e)}",
        ]
    if "F" in p:
        mod, ret = p["F"]["moderation"], p["F"]["retrieval"]
        lines += [
            "",
            "F. Micro (in-process, microseconds: mean / p50 / p99)",
            f"  WordFilter.scan, {mod['words']} words, {mod['message_chars']}-char message: "
            f"zh {_us(mod['scan_zh'])}, en {_us(mod['scan_en'])}; "
            f"moderate_with (+ personal data) zh {_us(mod['moderate_with_zh'])}",
        ]
        for size, run in ret["sizes"].items():
            lines.append(
                f"  {int(size):>7} entries (built in {run['build_seconds']} s): "
                f"faq_scores {_us(run['faq_scores'])}; faq_match {_us(run['faq_match'])}; "
                f"knowledge_search {_us(run['knowledge_search'])}"
            )
    if "G" in p:
        g = p["G"]
        faq_ratio = results["ratios"].get("api_faq_vs_widget", {})
        stream_ratio = results["ratios"].get("api_stream_first_delta_vs_widget", {})
        lines += [
            "",
            f"G. Headless chat over HTTP (REST API; {g.get('connections', '-')} keep-alive "
            "connections for blocking FAQ answers, one per SSE stream)",
            f"  {'FAQ rate/s':>10}  {'sent/done':>11}  {'end-to-end':>22}  "
            f"{'x widget (C) p50':>16}  server CPU",
        ]
        for rate, run in g["faq"].items():
            lines.append(
                f"  {rate:>10}  {run['sent']:>5}/{run['done']:<5}  "
                f"{_ms(run['end_to_end'], 'p50', 'p99', 'p999'):>22}  "
                f"{_num(faq_ratio.get(rate)):>16}  {_cpu(run)}"
                + (f"  errors {run['errors']}" if run["errors"] or run["lost"] else "")
            )
        lines.append(
            f"  {'SSE streams':>11}  {'first delta p50/p99':>19}  {'x widget (D) p50':>16}  "
            f"{'done p50/p99':>15}  {'tokens/s':>8}  server CPU"
        )
        for streams, run in g["streams"].items():
            lines.append(
                f"  {streams:>11}  {_ms(run['first_delta'], 'p50', 'p99'):>19}  "
                f"{_num(stream_ratio.get(streams)):>16}  "
                f"{_ms(run['end_to_end'], 'p50', 'p99'):>15}  "
                f"{_num(run['tokens_per_second']):>8}  {_cpu(run)}"
                + (
                    f"  errors {run['errors']} lost {run['lost']}"
                    if run["errors"] or run["lost"]
                    else ""
                )
            )
    if "H" in p:
        lines += _analytics_lines(p["H"])
    lines += ["", "Targets"]
    for row in results["targets"]:
        mark = {True: "✓", False: "✗", None: "–"}[row["ok"]]
        measured = "-" if row["measured"] is None else f"{_num(row['measured'])}{row['unit']}"
        note = "" if row["ok"] is not None else "  (not at the target's scale)"
        lines.append(
            f"  {mark}  {row['phase']}  {row['target']:<58} {measured:>10}  at {row['at']}{note}"
        )
    lines.append(f"\nTotal {results['seconds']:.0f} s; phase seconds {results['phase_seconds']}")
    return "\n".join(lines)


def _analytics_lines(h: dict[str, Any]) -> list[str]:
    if "skipped" in h:
        return ["", f"H. Analytics at scale: skipped ({h['skipped']})"]
    seed, day = h["seed"], h["day_rollup"]
    lines = [
        "",
        f"H. Analytics at scale: {seed['conversations']:,} conversations, "
        f"{seed['messages']:,} messages, {seed['report_rows']:,} reporting rows over "
        f"{seed['days']} days" + (" (seeded by an earlier run)" if seed.get("reused") else ""),
        f"  seeding {_num(seed['write_seconds'])} s ({_num(seed['rows_per_second'])} rows/s), "
        f"rollups of every day {_num(seed['rollup_seconds'])} s",
        f"  one day's rollup ({day['day']}: {day['messages']:,} messages, "
        f"{day['report_rows']:,} reporting rows): {_num(day['seconds'])} s",
        f"  {'page or API (range)':<44} {'p50 / p95 / max ms':>22}  statuses",
    ]
    for name, run in h["pages"]["measured"].items():
        lines.append(
            f"  {name:<44} {_ms(run, 'p50', 'p95', 'max'):>22}  {json.dumps(run['statuses'])}"
        )
    if h["pages"]["missing"]:
        lines.append(f"  missing (no such page yet): {', '.join(h['pages']['missing'])}")
    topics = h.get("topics", {})
    if "seconds" in topics:
        lines.append(f"  hot topics on {topics['questions']:,} questions: {topics['seconds']} s")
    elif "missing" in topics:
        lines.append(f"  hot topics: missing ({topics['missing']})")
    return lines


def _cpu(run: dict[str, Any]) -> str:
    """The server's CPU (% of one core: its event loop + its worker threads), then the
    database's and the whole machine's (% of one core: 200% is two busy cores)."""
    text = (
        f"{_num(run.get('server_cpu_percent'))}% "
        f"({_num(run.get('server_loop_cpu_percent'))} loop"
        f" + {_num(run.get('server_threads_cpu_percent'))} threads)"
    )
    if "postgres_cpu_percent" in run:
        text += f", PostgreSQL {_num(run['postgres_cpu_percent'])}%"
    if "machine_cpu_percent" in run:
        text += f", machine {_num(run['machine_cpu_percent'])}%"
    return text


def _closures(closed: dict[str, Any] | None) -> list[str]:
    """Sockets the server closed during a phase, by close code (none is expected)."""
    if not closed or not any(closed.values()):
        return []
    return [f"  sockets closed by the server (close code: count): {json.dumps(closed)}"]


def _us(summary: dict[str, Any]) -> str:
    return " / ".join(_num(summary.get(key)) for key in ("mean_us", "p50_us", "p99_us"))


# --- The run --------------------------------------------------------------------------------


async def phase(
    results: dict[str, Any], name: str, call: Callable[[], Awaitable[dict[str, Any]]]
) -> None:
    started = time.perf_counter()
    print(f"[bench] phase {name} ...", file=sys.stderr, flush=True)
    results["phases"][name] = await call()
    results["phase_seconds"][name] = round(time.perf_counter() - started, 1)


async def run(bench: phases.Bench, results: dict[str, Any]) -> None:
    plan = bench.plan
    services = bench.services
    mock_port = free_port()
    # The mock LLM and the demo data are development tools: the production settings lack them.
    dev_env = {**bench.env, "DJANGO_SETTINGS_MODULE": "helpdesk_site.settings.base"}
    bench.mock = services.start(
        "mockllm",
        [
            PYTHON,
            "manage.py",
            "mockllm",
            "--port",
            str(mock_port),
            "--ttft-ms",
            str(phases.TTFT_MS),
            "--token-ms",
            str(phases.TOKEN_MS),
            "--text",
            phases.LLM_ANSWER,
        ],
        env=dev_env,
        cores=bench.cores.load,
        port=mock_port,
    )
    await asyncio.to_thread(
        run_checked,
        [PYTHON, "manage.py", "demo", "--setup-only", "--no-history"],
        env=dev_env,
        cores=bench.cores.server,
    )
    setup = phases.parse_last_json(
        await asyncio.to_thread(
            run_checked,
            [PYTHON, "bench/load_setup.py", "--llm-url", f"http://127.0.0.1:{mock_port}/v1"],
            env=bench.env,
            cores=bench.cores.server,
        )
    )
    bench.public_key = setup["public_key"]
    bench.api_key = setup["api_key"]
    bench.faq_phrasings = setup["faq_phrasings"]
    results["config"]["faq_entries"] = setup["faq_entries"]
    results["config"]["faq_phrasings"] = len(bench.faq_phrasings)
    await asyncio.to_thread(phases.wait_for_port, bench.mock)

    wanted = bench.phases
    if "A" in wanted:
        await phase(results, "A", lambda: phases.phase_a(bench))

    if wanted & {"B", "C", "D", "E", "G"}:
        app_port = free_port()
        bench.app = await phases.start_service(
            bench, "app", phases.uvicorn_argv("helpdesk_site.asgi:application", app_port), app_port
        )
        results["config"]["warm_up_sources"] = await phases.warm_up(bench)
        if "B" in wanted:
            await phase(results, "B", lambda: phases.phase_b(bench))
        faq_pool, llm_pool = bench.widget_pool(), bench.widget_pool()
        try:
            if "C" in wanted:
                await phase(results, "C", lambda: phases.phase_c(bench, faq_pool))
            if "D" in wanted:
                await phase(results, "D", lambda: phases.phase_d(bench, llm_pool))
            if "E" in wanted:
                await phase(results, "E", lambda: phases.phase_e(bench, faq_pool, llm_pool))
            if "G" in wanted:
                await phase(results, "G", lambda: phases.phase_g(bench))
        finally:
            await faq_pool.close()
            await llm_pool.close()
        results["config"]["server_after"] = phases.server_state(bench)
    services.stop_all()
    bench.app = bench.mock = None

    async def micro() -> dict[str, Any]:
        output = await asyncio.to_thread(
            run_checked,
            phases.micro_argv(plan, bench.banking77_csv),
            env=bench.env,
            cores=bench.cores.server,
            timeout=1800,
        )
        return phases.parse_last_json(output)

    if "F" in wanted:
        await phase(results, "F", micro)
    if "H" in wanted:
        await phase(results, "H", lambda: analytics_phase(bench))


async def analytics_phase(bench: phases.Bench) -> dict[str, Any]:
    """Phase H in a process of its own, on its own PostgreSQL database (bench/load_analytics.py)."""
    if not bench.analytics_database_url:
        return {"skipped": "needs PostgreSQL: a postgres DATABASE_URL or --analytics-database"}
    postgres_database_ensure(bench.analytics_database_url)
    env = {
        **bench.env,
        "DJANGO_SETTINGS_MODULE": "helpdesk_site.settings.base",
        "DATABASE_URL": bench.analytics_database_url,
        "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
    }
    output = await asyncio.to_thread(
        run_checked,
        [
            PYTHON,
            "bench/load_analytics.py",
            "--conversations",
            str(bench.analytics_conversations),
            "--requests",
            str(bench.analytics_requests),
            "--topics",
            str(bench.analytics_topics),
        ],
        env=env,
        cores=bench.cores.server | bench.cores.load,
        timeout=4 * 3600,
    )
    return phases.parse_last_json(output)


def analytics_database(url: str, given: str | None) -> str:
    """Phase H's database: the one given, else the benchmark's PostgreSQL server with
    ``_analytics`` after the database's name; none without PostgreSQL."""
    if given:
        return given
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return ""
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "_analytics"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke size: under 2 minutes.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Results JSON file.")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="Record py-spy profiles of the server during phases C, D, E and G into this folder.",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="Keep the services' logs (a temporary folder)."
    )
    parser.add_argument(
        "--phases",
        default=DEFAULT_PHASES,
        help=f"Which phases to run, e.g. AC (default: {DEFAULT_PHASES}; H only when named).",
    )
    parser.add_argument(
        "--analytics-conversations",
        type=int,
        default=None,
        help="Phase H: conversations of generated history (default 1,000,000; quick 3,000).",
    )
    parser.add_argument(
        "--analytics-database",
        default=None,
        help="Phase H: PostgreSQL URL of its database (default: DATABASE_URL's name + "
        "'_analytics'); seeded once, reused by later runs with the same size.",
    )
    parser.add_argument(
        "--analytics-requests", type=int, default=None, help="Phase H: requests per page (20)."
    )
    parser.add_argument(
        "--analytics-topics",
        type=int,
        default=None,
        help="Phase H: questions for the hot-topics job (100,000; quick 2,000; 0: skip).",
    )
    parser.add_argument(
        "--banking77",
        type=Path,
        default=DEFAULT_CSV,
        help="BANKING77 CSV for phase F (default: the subset in bench/data/banking77/; "
        "the published figures use the full training split).",
    )
    parser.add_argument(
        "--settings",
        default="helpdesk_site.settings.base",
        help="Django settings module for the servers (to compare a configuration change).",
    )
    args = parser.parse_args()
    plan = phases.QUICK if args.quick else phases.FULL
    started = time.perf_counter()

    cores = Cores.pick()
    os.sched_setaffinity(0, cores.load)  # the generator's core; children pick their own
    fd_limit = fd_limit_raise(
        plan.idle_connections
        + plan.faq_sockets
        + plan.mixed_idle
        + 4 * max(plan.llm_streams)
        + FD_SLACK
    )
    workdir = Path(tempfile.mkdtemp(prefix="kefu-bench-"))
    (workdir / "logs").mkdir()
    env = bench_env(workdir, args.settings)
    database_url, redis_url = env["DATABASE_URL"], env.get("REDIS_URL", "")
    if urlsplit(database_url).scheme.startswith("postgres"):
        postgres_database_ensure(database_url)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {
        "mode": plan.name,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {**machine_info(), "load_average_start": load_average()},
        "config": {
            "database": urlsplit(database_url)
            .scheme.split("+")[0]
            .replace("postgresql", "postgres"),
            "database_conn_max_age": env.get("DATABASE_CONN_MAX_AGE", "settings default"),
            "commit": git_commit(),
            "redis": bool(redis_url),
            "cores": {
                "load": sorted(cores.load),
                "server": sorted(cores.server),
                "separate": cores.separate,
            },
            "fd_limit": fd_limit,
            "rate_limits": RATE_LIMITS,
            "plan": {k: v for k, v in vars(plan).items()},
            "versions": versions(),
            "generator_loop": "uvloop",
            "profiled": args.profile is not None,
            "settings": args.settings,
            "banking77": str(args.banking77),
            "phases": "".join(sorted(frozenset(args.phases.upper()) & frozenset(PHASES))),
        },
        "phases": {},
        "phase_seconds": {},
    }
    bench = phases.Bench(
        plan=plan,
        services=Services(workdir / "logs"),
        env=env,
        cores=cores,
        workdir=workdir,
        redis_url=redis_url,
        database_url=database_url,
        banking77_csv=args.banking77.resolve(),
        profile_dir=args.profile,
        phases=frozenset(args.phases.upper()) & frozenset(PHASES),
        analytics_database_url=analytics_database(database_url, args.analytics_database),
        analytics_conversations=args.analytics_conversations or ANALYTICS_CONVERSATIONS[plan.name],
        analytics_requests=args.analytics_requests or (20 if plan.name == "full" else 3),
        analytics_topics=(
            args.analytics_topics
            if args.analytics_topics is not None
            else (100_000 if plan.name == "full" else 2_000)
        ),
    )
    import uvloop

    try:
        with bench.services:
            uvloop.run(run(bench, results))
    except BaseException:
        print(f"[bench] failed; service logs are in {workdir / 'logs'}", file=sys.stderr)
        for log in sorted((workdir / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            if tail:
                print(f"--- {log.name}\n" + "\n".join(tail), file=sys.stderr)
        raise
    results["machine"]["load_average_end"] = load_average()
    results["ratios"] = ratios(results)
    results["targets"] = targets(results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["platform"] = platform.platform()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(table(results))
    print(f"\nResults: {args.out}")
    if args.keep_logs:
        print(f"Logs: {workdir / 'logs'}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
