"""Profiles of the server under load, with py-spy: record while a phase runs, then summarise.

``run.py --profile DIR`` records every measured server run into ``DIR/<run>.txt`` (py-spy's
collapsed-stack format). Summarise one:

    python bench/load_profile.py DIR/C-500.txt [--top 25] [--thread MainThread]

py-spy's idle detection does not work here, so samples whose innermost frame is a wait (a
worker thread waiting for work, a monitor thread sleeping) are dropped as idle; shares are of
the remaining busy samples. ``Runner.run`` as the innermost frame is the event loop inside
uvloop's C code: waiting for I/O or doing it, which py-spy cannot tell apart. Inclusive share:
the samples in which a function is anywhere on the stack; self share: the samples in which it
is the innermost frame. Frames are named ``function (file)``, line numbers
dropped, so that one function's lines add up.
"""

import argparse
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")
_SITE_PACKAGES = re.compile(r"^.*?/(?:site|dist)-packages/")
_STDLIB = re.compile(r"^.*?/lib/python3\.\d+/")
IDLE_LEAVES = frozenset(
    {
        "_worker (concurrent/futures/thread.py)",
        "Condition.wait (threading.py)",
        "Event.wait (threading.py)",
    }
)


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record_argv(*, pid: int, seconds: float, out: Path, rate: int = 400) -> list[str]:
    executable = py_spy()
    if executable is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    return [
        executable,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        # Blocking sampling attributed the asgiref worker's time to its idle frame (checked
        # against perf); sampling without pausing the process does not, and leaves the
        # server's timings alone.
        "--nonblocking",
        "--threads",
        "-o",
        str(out),
    ]


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = _STDLIB.sub("", _SITE_PACKAGES.sub("", match["file"]))
    return f"{match['function']} ({path})"


@dataclass(frozen=True)
class Profile:
    samples: int
    inclusive: Counter[str]
    self_time: Counter[str]
    threads: Counter[str]  # busy samples per thread

    def share(self, count: int) -> float:
        return 100 * count / self.samples if self.samples else 0.0


def profile_load(path: Path, *, thread: str | None = None) -> Profile:
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    busy_threads: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # With --threads the outermost frame names the thread: "thread (TID): NAME".
        thread_name = frames[0].partition("): ")[2] or frames[0]
        if thread is not None and thread not in frames[0]:
            continue
        names = [_frame_name(frame) for frame in frames[1:]]
        if not names or names[-1] in IDLE_LEAVES:
            continue
        busy_threads[thread_name] += count
        samples += count
        self_time[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    return Profile(samples, inclusive, self_time, busy_threads)


PROJECT_PACKAGES = ("conversations/", "knowledge/", "tenants/", "helpdesk_site/", "analytics/")


def _package(name: str) -> str:
    """``function (path)`` -> the path's top-level package or module: where the time goes."""
    path = name.rpartition(" (")[2].rstrip(")")
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") if head else path


def profile_report(profile: Profile, *, top: int = 25) -> str:
    share = profile.share
    lines = [
        f"{profile.samples} busy samples; by thread: "
        + ", ".join(f"{name} {share(count):.0f}%" for name, count in profile.threads.most_common(6))
    ]
    packages: Counter[str] = Counter()
    for name, count in profile.self_time.items():
        packages[_package(name)] += count
    lines.append(
        "self time by package: "
        + ", ".join(f"{package} {share(count):.0f}%" for package, count in packages.most_common(12))
    )
    lines.append("project functions, inclusive:")
    project = [
        (name, count)
        for name, count in profile.inclusive.most_common()
        if name.rpartition(" (")[2].startswith(PROJECT_PACKAGES)
    ]
    lines += [f"  {share(count):5.1f}%  {name}" for name, count in project[:top]]
    lines.append("functions, self:")
    lines += [
        f"  {share(count):5.1f}%  {name}" for name, count in profile.self_time.most_common(top)
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", default=None, help="Only stacks of this thread.")
    args = parser.parse_args()
    print(profile_report(profile_load(args.path, thread=args.thread), top=args.top))


if __name__ == "__main__":
    main()
