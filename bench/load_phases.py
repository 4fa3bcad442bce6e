"""The benchmark's phases A-E and G (F is ``bench/load_micro.py``, run as its own process).

Each phase function takes the ``Bench`` (what is running, where, with which plan) and returns a
JSON-ready dict; ``bench/run.py`` orders them, judges the targets and prints the table.
"""

import asyncio
import contextlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import load_client
from bench.load_client import SocketPool, Tracker, WidgetSocket
from bench.load_procs import (
    PYTHON,
    Cores,
    Service,
    Services,
    cpu_seconds,
    free_port,
    group_cpu_seconds,
    machine_busy_seconds,
    open_fds,
    rss_kb,
    thread_count,
    thread_cpu_seconds,
    wait_for_port,
)
from bench.load_profile import record_argv

HELLO = {"type": "hello", "language": "zh"}
# The mock LLM's answer: 40 stream tokens (devtools.mockllm.stream_tokens splits English
# into words with their leading space).
LLM_ANSWER = (
    "Thanks for asking! Our garden range includes gloves, seed kits and planters, and gift "
    "cards work for all of them. Delivery usually takes two to four days, and unused items can "
    "be returned within seven days for a full refund."
)
TTFT_MS = 300
TOKEN_MS = 20


@dataclass(frozen=True)
class Plan:
    """How big each phase is: ``QUICK`` for CI, ``FULL`` for the numbers we publish."""

    name: str
    idle_connections: int  # B
    idle_cpu_seconds: float
    faq_sockets: int  # A and C
    faq_rates: tuple[int, ...]
    faq_seconds: float
    llm_streams: tuple[int, ...]  # D: concurrent streams
    llm_seconds: float
    mixed_idle: int  # E
    mixed_streams: int
    mixed_rate: int
    mixed_seconds: float
    micro_sizes: tuple[int, ...]  # F
    micro_queries: int
    micro_repeat: int


QUICK = Plan(
    name="quick",
    idle_connections=300,
    idle_cpu_seconds=2,
    faq_sockets=100,
    faq_rates=(50, 100),
    faq_seconds=3,
    llm_streams=(20, 50),
    llm_seconds=3,
    mixed_idle=200,
    mixed_streams=20,
    mixed_rate=50,
    mixed_seconds=3,
    micro_sizes=(1_000, 10_000),
    micro_queries=300,
    micro_repeat=5,
)
FULL = Plan(
    name="full",
    idle_connections=10_000,
    idle_cpu_seconds=5,
    faq_sockets=2_000,
    faq_rates=(100, 250, 500),
    faq_seconds=10,
    llm_streams=(50, 200),
    llm_seconds=10,
    mixed_idle=5_000,
    mixed_streams=50,
    mixed_rate=250,
    mixed_seconds=10,
    micro_sizes=(1_000, 10_000, 100_000),
    micro_queries=2_000,
    micro_repeat=20,
)


@dataclass
class Bench:
    plan: Plan
    services: Services
    env: dict[str, str]
    cores: Cores
    workdir: Path
    redis_url: str
    database_url: str
    banking77_csv: Path
    profile_dir: Path | None = None
    phases: frozenset[str] = frozenset("ABCDEFG")
    analytics_database_url: str = ""  # H
    analytics_conversations: int = 1_000_000
    analytics_requests: int = 20
    analytics_topics: int = 100_000
    app: Service | None = None
    mock: Service | None = None
    public_key: str = ""
    api_key: str = ""
    faq_phrasings: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def running_app(self) -> Service:
        if self.app is None:
            raise RuntimeError("the app is not running")
        return self.app

    def running_mock(self) -> Service:
        if self.mock is None:
            raise RuntimeError("the mock LLM is not running")
        return self.mock

    @property
    def widget_uri(self) -> str:
        return f"ws://127.0.0.1:{self.running_app().port}/ws/widget/{self.public_key}/"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.running_app().port}"  # Kefu's own host: allowed

    def widget_pool(self) -> SocketPool:
        return SocketPool(self.widget_uri, origin=self.origin, hello=HELLO)


# --- Questions ------------------------------------------------------------------------------


def faq_question(phrasings: list[str]) -> Callable[[int, WidgetSocket], str]:
    """Each socket walks the FAQ phrasings from its own starting point, so a visitor never
    repeats a question (a repeat hands the conversation to a person)."""

    def text(i: int, socket: WidgetSocket) -> str:
        return phrasings[(socket.number * 37 + socket.asked) % len(phrasings)]

    return text


def llm_question(i: int, run: str) -> str:
    """A question the FAQ cannot answer, unique per request so that no cached answer serves
    it."""
    return (
        "Could you recommend a present for my aunt, who loves gardening and old jazz records? "
        f"(ticket {run}-{i})"
    )


def stream_seconds() -> float:
    from devtools.mockllm import stream_tokens

    return (TTFT_MS + TOKEN_MS * (len(stream_tokens(LLM_ANSWER)) - 1)) / 1000


def answer_tokens() -> int:
    from devtools.mockllm import stream_tokens

    return len(stream_tokens(LLM_ANSWER))


# --- Measuring the processes ----------------------------------------------------------------


class CpuMeters:
    """CPU of the server, the generator and the mock over a block, in % of one core each; also
    the database and Redis servers (which nothing pins: they share the machine's cores) and the
    whole machine (in % of one core, so 200% is two busy cores)."""

    def __init__(self, bench: Bench) -> None:
        self.groups = {
            name: process
            for name, process, used in (
                ("postgres", "postgres", "postgres" in bench.database_url),
                ("redis", "redis-server", bool(bench.redis_url)),
            )
            if used
        }
        self.pids = {"generator": os.getpid()}
        if bench.app is not None:
            self.pids["server"] = bench.app.pid
        if bench.mock is not None:
            self.pids["mock_llm"] = bench.mock.pid

    @contextlib.contextmanager
    def measure(self) -> Iterator[dict[str, float]]:
        """Also splits the server's CPU into its main thread (the event loop) and the rest
        (the worker threads that run sync code: the ORM, the Django cache)."""
        result: dict[str, float] = {}
        start = time.perf_counter()
        before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        groups_before = {name: group_cpu_seconds(p) for name, p in self.groups.items()}
        machine_before = machine_busy_seconds()
        server = self.pids.get("server")
        loop_before = thread_cpu_seconds(server, server) if server else 0.0
        yield result
        elapsed = time.perf_counter() - start
        for name, pid in self.pids.items():
            used = cpu_seconds(pid) - before[name]
            result[f"{name}_cpu_percent"] = round(100 * used / elapsed, 1)
        for name, process in self.groups.items():
            used = group_cpu_seconds(process) - groups_before[name]
            result[f"{name}_cpu_percent"] = round(100 * used / elapsed, 1)
        used = machine_busy_seconds() - machine_before
        result["machine_cpu_percent"] = round(100 * used / elapsed, 1)
        if server:
            loop = thread_cpu_seconds(server, server) - loop_before
            result["server_loop_cpu_percent"] = round(100 * loop / elapsed, 1)
            result["server_threads_cpu_percent"] = round(
                result["server_cpu_percent"] - result["server_loop_cpu_percent"], 1
            )


@contextlib.asynccontextmanager
async def profiled(bench: Bench, name: str, seconds: float) -> Any:
    """With ``--profile``, py-spy samples the server while the block runs (on the generator's
    core, so the server's core stays its own)."""
    if bench.profile_dir is None or bench.app is None:
        yield
        return
    out = bench.profile_dir / f"{name}.txt"
    spy = bench.services.start(
        f"py-spy-{name}",
        record_argv(pid=bench.app.pid, seconds=seconds, out=out),
        env=bench.env,
        cores=bench.cores.load,
    )
    try:
        yield
    finally:
        await asyncio.to_thread(spy.process.wait, seconds + 30)
        bench.services.stop(spy)


def tcp_peers(pid: int, remote_port: int) -> int:
    """How many TCP connections the process holds to ``remote_port`` on this host."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                remote, inode = parts[2], parts[9]
                if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                    count += 1
    return count


def redis_clients(bench: Bench) -> dict[str, int] | None:
    """Redis's whole ``CLIENT LIST`` (less this query's own connection), and the part of it
    that the server process holds."""
    if not bench.redis_url:
        return None
    import redis

    client = redis.Redis.from_url(bench.redis_url, socket_connect_timeout=2)
    try:
        total = len(client.client_list()) - 1
    finally:
        client.close()
    port = urlsplit(bench.redis_url).port or 6379
    return {
        "client_list": total,
        "server_process": tcp_peers(bench.app.pid, port) if bench.app is not None else 0,
    }


def server_state(bench: Bench) -> dict[str, Any]:
    pid = bench.running_app().pid
    state: dict[str, Any] = {
        "rss_kb": rss_kb(pid),
        "threads": thread_count(pid),
        "fds": open_fds(pid),
        "redis": redis_clients(bench),
    }
    database = urlsplit(bench.database_url)
    if database.scheme.startswith("postgres"):
        state["postgres_connections"] = tcp_peers(pid, database.port or 5432)
    return state


# --- Starting servers -----------------------------------------------------------------------


def uvicorn_argv(app: str, port: int) -> list[str]:
    """uvicorn as the README's production command runs it, with one worker."""
    return [
        PYTHON,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "off",
        "--no-access-log",
        "--ws-per-message-deflate",
        "false",
        "--workers",
        "1",
    ]


async def start_service(bench: Bench, name: str, argv: list[str], port: int) -> Service:
    service = bench.services.start(name, argv, env=bench.env, cores=bench.cores.server, port=port)
    await asyncio.to_thread(wait_for_port, service)
    return service


# --- A. Ceiling -----------------------------------------------------------------------------


async def phase_a(bench: Bench) -> dict[str, Any]:
    """Request/response latency of echo servers at phase C's rates and socket count."""
    plan = bench.plan
    phrasings = bench.faq_phrasings
    result: dict[str, Any] = {"sockets": plan.faq_sockets, "rates": {}}
    for kind in ("websockets", "channels"):
        port = free_port()
        if kind == "websockets":
            argv, path = [PYTHON, "bench/load_echo_ws.py", "--port", str(port)], "/"
        else:
            argv, path = uvicorn_argv("bench.load_echo_asgi:application", port), "/ws/echo/"
        service = await start_service(bench, f"echo-{kind}", argv, port)
        pool = SocketPool(f"ws://127.0.0.1:{port}{path}", origin="http://127.0.0.1", hello=None)
        try:
            connected = await pool.open(plan.faq_sockets)
            if connected.failed:
                raise RuntimeError(f"echo-{kind}: {connected.failures}")
            meters = CpuMeters(bench)
            meters.pids["server"] = service.pid
            await load_client.run_echo(
                pool,
                rate=plan.faq_rates[0],
                seconds=0.5,
                payload=lambda i: phrasings[i % len(phrasings)],
            )  # warm-up
            for rate in plan.faq_rates:
                with meters.measure() as cpu:
                    tracker = await load_client.run_echo(
                        pool,
                        rate=rate,
                        seconds=plan.faq_seconds,
                        payload=lambda i: phrasings[i % len(phrasings)],
                    )
                result["rates"].setdefault(str(rate), {})[kind] = {**tracker.summary(), **cpu}
            result.setdefault("closed_by_server", {})[kind] = dict(pool.closed_by_server)
        finally:
            await pool.close()
            bench.services.stop(service)
    return result


# --- B. Idle capacity -----------------------------------------------------------------------


async def phase_b(bench: Bench) -> dict[str, Any]:
    """Ramp N widget sockets (hello, welcome, then silence); memory, idle CPU, connect rate,
    and Redis connections before, during and after (a leak check)."""
    plan = bench.plan
    pid = bench.running_app().pid
    await asyncio.sleep(1)
    before = server_state(bench)
    pool = bench.widget_pool()
    connected = await pool.open(plan.idle_connections, concurrency=64, read=False)
    await asyncio.sleep(2)  # let the server settle: buffers freed, tasks parked
    during = server_state(bench)
    cpu_before, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(plan.idle_cpu_seconds)
    idle_cpu = 100 * (cpu_seconds(pid) - cpu_before) / (time.perf_counter() - started)
    still_open = pool.open_count()
    await pool.close()
    await asyncio.sleep(2)
    after = server_state(bench)
    per_connection = (
        (during["rss_kb"] - before["rss_kb"]) / connected.connected if connected.connected else 0
    )
    return {
        "target": plan.idle_connections,
        "connected": connected.connected,
        "failed": connected.failed,
        "failures": connected.failures,
        "still_open_after_idle": still_open,
        "connect_seconds": round(connected.seconds, 2),
        "connects_per_second": round(connected.per_second, 1),
        "handshake": connected.handshake,
        "rss_kb_per_connection": round(per_connection, 1),
        "idle_cpu_percent": round(idle_cpu, 2),
        "idle_cpu_seconds": plan.idle_cpu_seconds,
        "before": before,
        "during": during,
        "after_close": after,
    }


# --- C. FAQ path ----------------------------------------------------------------------------


async def phase_c(bench: Bench, pool: SocketPool) -> dict[str, Any]:
    """FAQ questions at each rate over ``faq_sockets`` connected widgets."""
    plan = bench.plan
    question = faq_question(bench.faq_phrasings)
    connected = await pool.open(plan.faq_sockets)
    result: dict[str, Any] = {
        "sockets": connected.connected,
        "connect_failures": connected.failures,
        "rates": {},
    }
    await load_client.run_messages(
        pool,
        name="warm-up",
        rate=plan.faq_rates[0],
        seconds=0.5,
        text=question,
        drain_seconds=10,
    )
    meters = CpuMeters(bench)
    for rate in plan.faq_rates:
        async with profiled(bench, f"C-{rate}", plan.faq_seconds):
            with meters.measure() as cpu:
                tracker = await load_client.run_messages(
                    pool,
                    name="faq",
                    rate=rate,
                    seconds=plan.faq_seconds,
                    text=question,
                    drain_seconds=15,
                )
        result["rates"][str(rate)] = {**tracker.summary(), **cpu}
    result["closed_by_server"] = dict(pool.closed_by_server)
    return result


# --- D. LLM path ----------------------------------------------------------------------------


def direct_body(i: int, run: str) -> bytes:
    return json.dumps(
        {
            "model": "kefu-mock",
            "messages": [
                {"role": "system", "content": "You are a customer-service assistant."},
                {"role": "user", "content": llm_question(i, run)},
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()


def llm_summary(tracker: Tracker, tokens: int) -> dict[str, Any]:
    summary = tracker.summary()
    gaps = tracker.gaps
    wall = summary["wall_seconds"]
    completed = tracker.done
    summary["tokens_per_second"] = round(completed * tokens / wall, 1) if wall else 0.0
    summary["gap_minus_token_ms"] = (
        {
            "p50_ms": round(gaps.percentile_ms(50) - TOKEN_MS, 3),
            "p99_ms": round(gaps.percentile_ms(99) - TOKEN_MS, 3),
        }
        if len(gaps)
        else {}
    )
    # Little's law: the streams that were open on average.
    mean = summary["end_to_end"].get("mean_ms", 0) / 1000
    summary["mean_concurrency"] = round(completed * mean / wall, 1) if wall else 0.0
    return summary


async def llm_run(
    bench: Bench, pool: SocketPool, *, streams: int, seconds: float, name: str
) -> Tracker:
    run = f"{name}{time.monotonic_ns() % 10**6}"
    return await load_client.run_messages(
        pool,
        name=name,
        rate=streams / stream_seconds(),
        seconds=seconds,
        text=lambda i, socket: llm_question(i, run),
        drain_seconds=stream_seconds() + 30,
        prefer_idle=True,
        id_prefix=name,
    )


async def phase_d(bench: Bench, pool: SocketPool) -> dict[str, Any]:
    """Streams through the platform versus the same requests sent straight to the mock LLM."""
    mock = bench.running_mock()
    plan = bench.plan
    tokens = answer_tokens()
    rate_per_stream = 1 / stream_seconds()
    connected = await pool.open(2 * max(plan.llm_streams))
    result: dict[str, Any] = {
        "ttft_ms": TTFT_MS,
        "token_ms": TOKEN_MS,
        "answer_tokens": tokens,
        "stream_seconds": stream_seconds(),
        "sockets": connected.connected,
        "streams": {},
    }
    await llm_run(bench, pool, streams=min(plan.llm_streams), seconds=0.5, name="warmup")
    meters = CpuMeters(bench)
    for streams in plan.llm_streams:
        rate = streams * rate_per_stream
        run = f"direct{streams}"

        def body(i: int, run: str = run) -> bytes:
            return direct_body(i, run)

        with meters.measure() as direct_cpu:
            direct = await load_client.run_direct(
                host="127.0.0.1",
                port=mock.port or 0,
                rate=rate,
                seconds=plan.llm_seconds,
                body=body,
                drain_seconds=stream_seconds() + 30,
            )
        async with profiled(bench, f"D-{streams}", plan.llm_seconds):
            with meters.measure() as cpu:
                platform = await llm_run(
                    bench, pool, streams=streams, seconds=plan.llm_seconds, name=f"llm{streams}"
                )
        direct_summary = {**llm_summary(direct, tokens), **direct_cpu}
        platform_summary = {**llm_summary(platform, tokens), **cpu}
        overhead = {
            key: round(
                platform_summary["first_delta"].get(f"{key}_ms", 0)
                - direct_summary["first_delta"].get(f"{key}_ms", 0),
                3,
            )
            for key in ("p50", "p99")
        }
        result["streams"][str(streams)] = {
            "arrival_rate": round(rate, 2),
            "direct": direct_summary,
            "platform": platform_summary,
            "ttft_overhead_ms": overhead,
        }
    result["closed_by_server"] = dict(pool.closed_by_server)
    return result


# --- E. Mixed -------------------------------------------------------------------------------


async def phase_e(bench: Bench, faq_pool: SocketPool, llm_pool: SocketPool) -> dict[str, Any]:
    """Idle sockets, LLM streams and FAQ load at once; FAQ latency compared with phase C."""
    plan = bench.plan
    idle_pool = bench.widget_pool()
    try:
        if not len(faq_pool):  # phase C did not run
            await faq_pool.open(plan.faq_sockets)
        if not len(llm_pool):  # nor phase D
            await llm_pool.open(2 * plan.mixed_streams)
        idle = await idle_pool.open(plan.mixed_idle, read=False)
        lead = stream_seconds()  # LLM streams reach their steady number before FAQ load starts

        async def faq_later() -> Tracker:
            await asyncio.sleep(lead)
            return await load_client.run_messages(
                faq_pool,
                name="faq",
                rate=plan.mixed_rate,
                seconds=plan.mixed_seconds,
                text=faq_question(bench.faq_phrasings),
                drain_seconds=15,
            )

        async with profiled(bench, "E", plan.mixed_seconds + 2 * lead):
            with CpuMeters(bench).measure() as cpu:
                llm, faq = await asyncio.gather(
                    llm_run(
                        bench,
                        llm_pool,
                        streams=plan.mixed_streams,
                        seconds=plan.mixed_seconds + 2 * lead,
                        name="mixed",
                    ),
                    faq_later(),
                )
        return {
            "idle_sockets": idle.connected,
            "llm_streams": plan.mixed_streams,
            "faq_rate": plan.mixed_rate,
            "faq": faq.summary(),
            "llm": llm_summary(llm, answer_tokens()),
            "idle_still_open": idle_pool.open_count(),
            **cpu,
        }
    finally:
        await idle_pool.close()


# --- G. The REST API (headless chat) -------------------------------------------------------


def api_faq_body(bench: Bench, users: int) -> Callable[[int], bytes]:
    """Blocking FAQ questions from ``users`` API customers, each walking the phrasings from its
    own starting point and never repeating itself (counts kept across runs, as a socket's)."""
    phrasings = bench.faq_phrasings
    asked: Counter[int] = Counter()

    def body(i: int) -> bytes:
        user = i % users
        text = phrasings[(user * 37 + asked[user]) % len(phrasings)]
        asked[user] += 1
        return json.dumps(
            {"query": text, "user": f"bench-faq-{user}", "response_mode": "blocking"}
        ).encode()

    return body


def api_llm_body(run: str, users: int) -> Callable[[int], bytes]:
    def body(i: int) -> bytes:
        return json.dumps(
            {"query": llm_question(i, run), "user": f"bench-llm-{i % users}"}
        ).encode()

    return body


async def phase_g(bench: Bench) -> dict[str, Any]:
    """Headless chat over HTTP, after phases C and D in the same run: blocking FAQ answers at
    each FAQ rate (keep-alive connections, like a server-side integration), then LLM answers
    streamed as server-sent events, one connection per stream."""
    plan = bench.plan
    port = bench.running_app().port or 0
    headers = {"Authorization": f"Bearer {bench.api_key}"}
    connections = load_client.HttpConnections("127.0.0.1", port, headers)
    faq_body = api_faq_body(bench, plan.faq_sockets)
    result: dict[str, Any] = {"faq": {}, "streams": {}}
    meters = CpuMeters(bench)
    try:
        await load_client.run_api_blocking(
            connections,
            name="warm-up",
            rate=plan.faq_rates[0],
            seconds=0.5,
            body=faq_body,
            drain_seconds=10,
        )
        for rate in plan.faq_rates:
            async with profiled(bench, f"G-faq-{rate}", plan.faq_seconds):
                with meters.measure() as cpu:
                    tracker = await load_client.run_api_blocking(
                        connections,
                        name="api-faq",
                        rate=rate,
                        seconds=plan.faq_seconds,
                        body=faq_body,
                        drain_seconds=15,
                    )
            result["faq"][str(rate)] = {**tracker.summary(), **cpu}
        result["connections"] = connections.opened
    finally:
        await connections.close()
    tokens = answer_tokens()
    for streams in plan.llm_streams:
        run = f"api{streams}-{time.monotonic_ns() % 10**6}"
        async with profiled(bench, f"G-sse-{streams}", plan.llm_seconds):
            with meters.measure() as cpu:
                tracker = await load_client.run_api_streams(
                    host="127.0.0.1",
                    port=port,
                    headers=headers,
                    rate=streams / stream_seconds(),
                    seconds=plan.llm_seconds,
                    body=api_llm_body(run, 2 * streams),
                    drain_seconds=stream_seconds() + 30,
                )
        result["streams"][str(streams)] = {**llm_summary(tracker, tokens), **cpu}
    return result


# --- Preparing the app ----------------------------------------------------------------------


async def warm_up(bench: Bench) -> dict[str, Any]:
    """One FAQ question and one LLM question on a fresh socket: imports, the knowledge index
    and the word filter are built before anything is measured. Checks the paths answer as
    the phases assume (FAQ from the FAQ, the other through the LLM)."""
    pool = bench.widget_pool()
    try:
        opened = await pool.open(1)
        if not opened.connected:
            raise RuntimeError(f"cannot open a widget socket: {opened.failures}")
        faq = await load_client.run_messages(
            pool,
            name="warm",
            rate=10,
            seconds=0.1,
            text=faq_question(bench.faq_phrasings),
            drain_seconds=30,
        )
        llm = await load_client.run_messages(
            pool,
            name="warm",
            rate=10,
            seconds=0.1,
            text=lambda i, socket: llm_question(i, "warm"),
            drain_seconds=30,
        )
    finally:
        await pool.close()
    sources = {"faq": dict(faq.sources), "llm": dict(llm.sources)}
    if set(faq.sources) != {"faq"} or not set(llm.sources) <= {"rag", "llm"} or not llm.sources:
        raise RuntimeError(
            f"the answer paths are not what the benchmark expects: {sources}, errors "
            f"{dict(faq.errors)} {dict(llm.errors)}"
        )
    return sources


def micro_argv(plan: Plan, csv: Path) -> list[str]:
    return [
        PYTHON,
        "bench/load_micro.py",
        "--csv",
        str(csv),
        "--sizes",
        ",".join(map(str, plan.micro_sizes)),
        "--queries",
        str(plan.micro_queries),
        "--repeat",
        str(plan.micro_repeat),
    ]


def parse_last_json(output: str) -> dict[str, Any]:
    for line in reversed(output.strip().splitlines()):
        if re.match(r"^\s*\{", line):
            return json.loads(line)
    raise RuntimeError(f"no JSON in output: {output[-500:]}")
