"""Child processes and interruption.

* :func:`run` starts every external tool (make, compilers, simulators, YoWASP tools, runners)
  in **its own process group** and, when the call ends by an error, a timeout or an
  interruption, kills that whole group (the tool and everything it started: a cocotb runner's
  simulator, make's compilers) before returning, so that no child outlives the command.
* :func:`handle_signals` (used by the command line) turns SIGINT, SIGTERM and SIGHUP into an
  :class:`Interrupted` exception in the main thread. The stack then unwinds as for any
  error: every temporary file and folder is removed by the code that made it (``finally`` /
  ``except BaseException`` in :mod:`bnnhw.outputs` and the backends) and every child group
  is killed by :func:`run`. Further signals are ignored while that cleanup runs; the command
  exits with ``128 + signal number`` (130 for ^C, 143 for SIGTERM).

Because children are not in the terminal's foreground group, ^C reaches bnnhw only, and bnnhw
stops them.
"""

import contextlib
import os
import signal
import subprocess
import threading
import time

__all__ = ["Interrupted", "run", "handle_signals", "kill_children", "SIGNALS"]

#: The signals that interrupt a command (cleanly).
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Seconds a child group gets to exit after SIGTERM before SIGKILL.
GRACE_SECONDS = 2.0

_live = set()
_lock = threading.Lock()


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when a command receives SIGINT, SIGTERM or SIGHUP."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self):
        return signal.Signals(self.signum).name


def _alive_unreaped(pid):
    """Whether ``pid`` (our child) has not exited yet; never reaps it, so that its process
    group id stays reserved while we signal the group."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return info is None


def _kill_group(proc):
    """SIGTERM the child's process group, SIGKILL it after :data:`GRACE_SECONDS`, reap."""
    if proc.returncode is None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            if sig == signal.SIGKILL:
                break
            deadline = time.monotonic() + GRACE_SECONDS
            while time.monotonic() < deadline and _alive_unreaped(proc.pid):
                time.sleep(0.02)
            # The leader is not reaped yet, so its group id cannot have been reused: a last
            # SIGKILL reaches whatever of the group is still there (a grandchild that
            # ignored SIGTERM).
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL always ends it
            pass
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def run(args, *, cwd=None, env=None, stdin=None, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, timeout=None, input=None):
    """Run ``args`` to completion in its own process group (see the module docstring).

    Like :func:`subprocess.run` (``stdout``/``stderr`` captured by default); raises
    :class:`subprocess.TimeoutExpired` after ``timeout`` seconds and whatever interrupts it
    (:class:`Interrupted`), in both cases after the child's whole group is gone.
    """
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.PIPE if input is not None
                            else stdin, stdout=stdout, stderr=stderr, text=text,
                            start_new_session=True)
    with _lock:
        _live.add(proc)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        with _lock:
            _live.discard(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_children():
    """Kill every child group :func:`run` still has (a last resort at exit)."""
    with _lock:
        live = list(_live)
        _live.clear()
    for proc in live:
        _kill_group(proc)


def _handler(signum, frame):
    # Let the cleanup that this exception starts run to its end: later signals are ignored.
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals():
    """Within the block, SIGINT / SIGTERM / SIGHUP raise :class:`Interrupted` (main thread
    only; elsewhere a no-op); the previous handlers are restored after it, and any child
    still running is killed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    for sig in SIGNALS:
        previous = signal.getsignal(sig)
        # A signal the parent told us to ignore (nohup, a background job's SIGINT) stays
        # ignored.
        if previous is signal.SIG_IGN:
            continue
        old[sig] = previous
        signal.signal(sig, _handler)
    try:
        yield
    finally:
        try:
            kill_children()
        finally:
            for sig, previous in old.items():
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
