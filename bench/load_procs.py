"""Processes for the benchmark: start them pinned to a core, stop them whole, read their /proc.

Every service runs in a process group of its own, so that stopping it also stops anything it
started; ``Services`` stops them all, newest first, however the run ends.
"""

import contextlib
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Cores:
    """Which cores the load generator (with the mock LLM) and the server under test run on."""

    load: frozenset[int]
    server: frozenset[int]

    @property
    def separate(self) -> bool:
        return not self.load & self.server

    @classmethod
    def pick(cls) -> "Cores":
        available = sorted(os.sched_getaffinity(0))
        if len(available) < 2:
            # One core: nothing to separate; the results say so (``separate`` is False).
            return cls(frozenset(available), frozenset(available))
        return cls(frozenset(available[:1]), frozenset(available[1:2]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with code {self.process.returncode}:\n{self.log_tail()}"
            )

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        # A service may leave children behind in its group even after it exited itself.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


class Services:
    """The running services, stopped newest first on ``stop`` or on leaving the ``with``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._running: list[Service] = []

    def __enter__(self) -> "Services":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cores: frozenset[int],
        port: int | None = None,
    ) -> Service:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as handle:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                list(argv),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped whole
                preexec_fn=lambda: os.sched_setaffinity(0, cores),
            )
        service = Service(name, process, log, port)
        self._running.append(service)
        return service

    def stop(self, service: Service) -> None:
        service.stop()
        if service in self._running:
            self._running.remove(service)

    def stop_all(self) -> None:
        while self._running:
            self._running.pop().stop()


def wait_for_port(service: Service, timeout: float = 30.0) -> None:
    """Waits until ``service`` accepts TCP connections on its port."""
    if service.port is None:
        raise ValueError(f"{service.name} has no port to wait for")
    deadline = time.monotonic() + timeout
    while True:
        service.check_alive()
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", service.port), timeout=0.5),
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} did not listen within {timeout:.0f} s")
        time.sleep(0.05)


def run_checked(
    argv: Sequence[str], *, env: dict[str, str], cores: frozenset[int], timeout: float = 180
) -> str:
    """Runs a preparation step to completion; its output, or an error carrying it."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        list(argv),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[1:3])} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    return result.stdout


# --- /proc --------------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    """Resident memory of the process (VmRSS), in KB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces and parentheses: fields are counted after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """CPU time of one thread of the process (the main thread's id is the process id)."""
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pids_named(*names: str) -> list[int]:
    """Processes of this machine whose command name is one of ``names`` (e.g. "postgres")."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in names:
                    found.append(int(entry.name))
    return found


def group_cpu_seconds(*names: str) -> float:
    """CPU time of every live process named one of ``names``, plus what their exited children
    used (a server's exited workers are reaped by its parent, so they count there): the
    difference of two readings is what the group used in between, however many processes came
    and went (PostgreSQL starts a backend per connection)."""
    total = 0.0
    for pid in pids_named(*names):
        with contextlib.suppress(OSError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat), summed over cores."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def machine_info() -> dict[str, object]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    total = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    return {
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "memory_gb": round(int(total.group(1)) / 1024 / 1024, 1) if total else None,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }
