"""``srun --pty``: task zero on a pseudo-terminal of its own, srun's terminal passed through.

The task's side is a pty pair sized like srun's terminal; the task leads a
session whose controlling terminal is that pty, so a shell there has job
control and Ctrl-C / Ctrl-Z reach its foreground command. srun's side puts its
own terminal in raw mode (keys go to the task's terminal as bytes, not as
signals to srun), copies bytes both ways, passes window size changes on, and
gives the terminal back as it found it however the step ends.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios
import threading
import tty

# Once the task has ended, output it wrote is still being read for this long after the last byte.
_DRAIN_QUIET = 0.2


def window_size(fd: int = 1) -> tuple[int, int]:
    """(rows, columns) of the terminal on ``fd``; OSError when it is not one."""
    packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    rows, cols, _, _ = struct.unpack("HHHH", packed)
    return rows, cols


def set_window_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def open_pair(rows: int, cols: int) -> tuple[int, int]:
    """(master, slave) of a new pty of ``rows`` x ``cols``."""
    master, slave = os.openpty()
    set_window_size(slave, rows, cols)
    os.set_inheritable(master, False)
    return master, slave


def take_terminal() -> None:
    """In the task, after setsid: make its stdin (the pty) the session's controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Relay:
    """Copies srun's stdin to the pty and the pty to srun's stdout, srun's terminal raw meanwhile."""

    def __init__(self, master: int, label: bytes = b""):
        self.master, self.label = master, label
        self._saved = None
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._at_line_start = True
        self._closed = False

    def start(self) -> None:
        if os.isatty(0):
            try:
                self._saved = termios.tcgetattr(0)
                tty.setraw(0, termios.TCSANOW)
            except termios.error:  # not ours to change (srun in the background): keys still pass
                self._saved = None
        self._thread = threading.Thread(target=self._copy, daemon=True)
        self._thread.start()

    def resize(self) -> None:
        """srun's terminal changed size: the task's follows (the kernel tells its foreground group)."""
        try:
            set_window_size(self.master, *window_size(1))
        except OSError:
            pass

    def foreground_group(self) -> int | None:
        """The process group the task's terminal gives keys to (a shell's foreground command)."""
        try:
            return os.tcgetpgrp(self.master)
        except OSError:
            return None

    def _out(self, data: bytes) -> None:
        if self.label:  # srun -l labels task zero's lines on its terminal too
            parts = data.split(b"\n")
            text = b""
            for i, part in enumerate(parts):
                if self._at_line_start and part:
                    text += self.label
                    self._at_line_start = False
                text += part
                if i < len(parts) - 1:
                    text += b"\n"
                    self._at_line_start = True
            data = text
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(1, view):]
            except BlockingIOError:
                select.select([], [1], [])
            except OSError:  # srun's output is gone: the task's output has nowhere to go
                return

    def _copy(self) -> None:
        sources = [self.master, self._wake_r, 0]
        draining = False
        while True:
            try:
                ready, _, _ = select.select(sources, [], [], _DRAIN_QUIET if draining else None)
            except (OSError, ValueError):
                return
            if not ready:  # ended, and nothing more came
                return
            if self._wake_r in ready:
                draining = True
                sources = [self.master]
                continue
            if self.master in ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: every process holding the task's terminal closed it
                    data = b""
                if not data:
                    return
                self._out(data)
            if 0 in ready and 0 in sources:
                try:
                    data = os.read(0, 65536)
                except OSError:
                    data = b""
                if not data:  # srun's stdin ended; the task keeps its terminal
                    sources.remove(0)
                    continue
                try:
                    os.write(self.master, data)
                except OSError:
                    return

    def finish(self) -> None:
        """The task ended: pass on what it still wrote, then give the terminal back. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(timeout=5)
        self.restore()
        for fd in (self._wake_r, self._wake_w, self.master):
            try:
                os.close(fd)
            except OSError:
                pass

    def restore(self) -> None:
        if self._saved is not None:
            try:
                termios.tcsetattr(0, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass
            self._saved = None
