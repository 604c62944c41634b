"""CPU accounting: where the machine's CPU went during a measurement."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own utime+stime, reaped children's cutime+cstime) in seconds."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
    own = (int(fields[11]) + int(fields[12])) / _TICK
    reaped = (int(fields[13]) + int(fields[14])) / _TICK
    return int(fields[1]), own, reaped


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None:
                children.setdefault(found[0], []).append(int(entry.name))
    return children


def _machine_busy() -> float:
    """CPU seconds the whole machine spent not idle since boot (/proc/stat)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0
    ticks = [int(x) for x in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICK


def tree_cpu(root: int, children: dict[int, list[int]]) -> float:
    """CPU seconds of a process, its live descendants and the children it has reaped."""
    total = 0.0
    stack, seen = [root], set[int]()
    while stack and len(seen) < 10_000:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found = _stat(pid)
        if found is None:
            continue
        total += found[1] + found[2]
        stack.extend(children.get(pid, ()))
    return total


class CpuMeter:
    """CPU seconds per named group of process trees between ``start()`` and ``stop()``.

    ``self`` is this process (the Python client of e2e / fan-out); ``wrk`` the reaped child
    processes (wrk runs) of this process.
    """

    def __init__(self, groups: Mapping[str, Sequence[int]]) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items() if pids}
        self._start: dict[str, float] = {}
        self._wall = 0.0
        self.used: dict[str, float] = {}

    def run(self, work: Callable[[], T]) -> T:
        self.start()
        try:
            return work()
        finally:
            self.stop()

    def _sample(self) -> dict[str, float]:
        children = _children_map()
        sample = {
            name: sum(tree_cpu(pid, children) for pid in pids) for name, pids in self.groups.items()
        }
        me = os.times()
        sample["client"] = me.user + me.system
        sample["wrk"] = me.children_user + me.children_system
        sample["machine"] = _machine_busy()
        return sample

    def start(self) -> None:
        self._wall = time.monotonic()
        self._start = self._sample()

    def stop(self) -> dict[str, float]:
        end = self._sample()
        wall = time.monotonic() - self._wall
        used = {k: round(end[k] - self._start.get(k, 0.0), 2) for k in end}
        machine = used.pop("machine")
        ours = sum(used.values())
        # Everything else that ran meanwhile: other tenants of a shared machine, the kernel.
        used["others"] = round(max(0.0, machine - ours), 2)
        used["wall_seconds"] = round(wall, 2)
        used["machine_busy_share"] = round(machine / (wall * (os.cpu_count() or 1)), 3)
        self.used = used
        return used


def per_message(used: Mapping[str, float], count: float) -> dict[str, float]:
    """CPU milliseconds per message (or per delivery) of each group."""
    if not count:
        return {}
    skip = {"wall_seconds", "machine_busy_share"}
    return {k: round(v * 1000 / count, 3) for k, v in used.items() if k not in skip and v}
