"""Process trees for the interruption tests: who a command started, and whether any of them
is still running."""

import os
import time
from pathlib import Path


def _stat(pid):
    """``(ppid, state, start time)`` of ``pid`` from ``/proc``, or ``None`` when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[1]), rest[0], int(rest[19])


def descendants(pid):
    """``{(pid, start time): command}`` of every living descendant of ``pid``."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None:
                children.setdefault(info[0], []).append((int(entry), info[2]))
    out, todo = {}, [pid]
    while todo:
        for child, start in children.get(todo.pop(), []):
            try:
                command = Path(f"/proc/{child}/comm").read_text().strip()
            except OSError:
                continue
            out[(child, start)] = command
            todo.append(child)
    return out


def running(processes):
    """The processes of ``processes`` (as :func:`descendants` gives them) still running: not
    gone, not a zombie (an orphan's zombie waits for init to reap it, it runs nothing)."""
    alive = {}
    for (pid, start), command in processes.items():
        info = _stat(pid)
        if info is not None and info[2] == start and info[1] not in ("Z", "X"):
            alive[(pid, start)] = command
    return alive


def wait_for(predicate, timeout, what):
    """Poll ``predicate()`` every 20 ms until it returns something true; fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
