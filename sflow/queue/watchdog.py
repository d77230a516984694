"""Supervision: a controller that died while money or jobs are live is started again.

Two mechanisms, either enough on its own:

- the watchdog, a small process the controller starts beside itself (double
  fork, its own session, standard library only). It sleeps in ``flock`` on
  ``ctl.lock``, which the controller holds for its whole life; getting the lock
  means the controller is gone. If it left without cleaning up (its ``ctl.pid``
  is still there: killed, not stopped) and the store holds a running job or a
  live Mithril bid, the watchdog starts a controller and sleeps again; otherwise
  it leaves. One per home (``watchdog.lock``).
- ``revive``, called by the read-only commands (squeue, sacct, sinfo,
  scontrol), which read the store and never talk to the controller: when the
  store holds live work and the socket does not answer, they start one. The
  commands that talk to the controller already start it.

``SFLOW_WATCHDOG=0`` keeps the watchdog from being started (``revive`` still runs).
"""

from __future__ import annotations

import fcntl
import os
import sys
import time

# The C module, as in sflow.queue.client: socket.py costs the read-only commands milliseconds.
import _socket as socket

from sflow.queue import paths

WATCHDOG_LOCK = "watchdog.lock"
WATCHDOG_PID = "watchdog.pid"
MAX_RESTARTS = 5  # within RESTART_WINDOW: a controller that dies at once every time is not restarted forever
RESTART_WINDOW = 300.0


def live_work(home: str) -> bool:
    """The store holds a running job or a bid not yet confirmed gone (either may be costing money)."""
    path = paths.db_path(home)
    if not os.path.exists(path):
        return False
    import sqlite3  # deferred: the watchdog sleeps without it, the read-only commands have it already

    try:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    except sqlite3.Error:
        return False
    try:
        conn.execute("PRAGMA query_only=1")
        if conn.execute("SELECT 1 FROM jobs WHERE state IN ('RUNNING', 'COMPLETING') LIMIT 1").fetchone():
            return True
        try:
            return conn.execute("SELECT 1 FROM bids WHERE ended IS NULL LIMIT 1").fetchone() is not None
        except sqlite3.OperationalError:  # no Mithril job ever: no bids table
            return False
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def controller_running(home: str) -> bool:
    """A controller holds ``home``'s lock (whether or not it answers yet)."""
    fd = os.open(paths.lock_path(home), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the lock again
    return False


def controller_answers(home: str) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(paths.socket_path(home))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def revive(home: str) -> bool:
    """Start a controller for ``home`` if live work exists and none answers (without waiting for it).

    The store is asked first: connecting to a controller with nothing to do would keep it from leaving idle.
    """
    if not live_work(home) or controller_answers(home):
        return False
    from sflow.queue.client import start_controller  # deferred: squeue and sacct come here, never to the socket

    start_controller(home)
    return True


def start(home: str) -> None:
    """Start the watchdog for ``home`` (a no-op if one is there already: it holds its own lock)."""
    if os.environ.get("SFLOW_WATCHDOG", "1").strip().lower() in ("0", "no", "false", "off"):
        return
    child = os.fork()
    if child == 0:  # the intermediate: new session, fork the watchdog, leave (no zombie for the controller)
        try:
            os.setsid()
            if os.fork() == 0:
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 0)
                log = os.open(paths.log_path(home), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.closerange(3, 65536)
                os.execve(sys.executable, [sys.executable, "-m", "sflow.queue.watchdog"],
                          {**os.environ, "SFLOW_HOME": home})
        finally:
            os._exit(0)
    os.waitpid(child, 0)


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} watchdog {os.getpid()}: {message}", file=sys.stderr, flush=True)


def _killed(home: str) -> bool:
    """The controller that held the lock died without its clean exit (which removes ``ctl.pid``),
    and did not refuse to start (a bad slurm.conf: starting it again changes nothing)."""
    return os.path.exists(paths.pid_path(home)) and not os.path.exists(paths.failure_path(home))


def watch(home: str) -> str:
    """Sleep on the controller's lock; restart it while it dies with live work. Returns why it stopped."""
    restarts: list[float] = []
    while True:
        fd = os.open(paths.lock_path(home), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks for as long as a controller lives
            if not _killed(home):
                return "the controller stopped"
            if not live_work(home):
                return "nothing left to supervise"
        finally:
            os.close(fd)  # releases the lock: the controller started next takes it
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
        if len(restarts) > MAX_RESTARTS:
            return f"the controller died {MAX_RESTARTS} times in {RESTART_WINDOW:.0f} s; leaving it down"
        _say("the controller died with jobs or bids live: starting it again")
        from sflow.queue.client import ControllerUnavailable, connect  # deferred: as above

        try:
            connect(home).close()  # starts one and waits until it answers (it holds the lock by then)
        except ControllerUnavailable as err:
            return f"could not start the controller: {err}"


def main() -> int:
    home = paths.home()
    fd = os.open(os.path.join(home, WATCHDOG_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # this home has its watchdog
    import signal  # deferred: its enums cost the read-only commands, which import this module, a millisecond

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave through the finally below
    pid_file = os.path.join(home, WATCHDOG_PID)
    with open(pid_file, "w") as handle:
        handle.write(f"{os.getpid()}\n")
    try:
        while True:
            why = watch(home)
            # A controller started as this one decided to leave found its lock taken and went without
            # a watchdog: keep watching it.
            if not controller_running(home):
                break
    finally:
        try:
            os.unlink(pid_file)
        except OSError:
            pass
    _say(f"leaving: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
