"""The controller's socket: connections, one JSON object per line each way.

A mixin of ``Controller``: non-blocking sockets on its selector; replies are
queued during a turn and sent after its COMMIT; only this user (or root)
may connect.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import socket
import struct

from sflow.queue import paths


# A reply larger than the socket's usual send buffer (about 200 KB) gets a buffer that holds it
# whole, up to this: it leaves in one send, not one turn of the loop per buffer's worth.
MAX_SEND_BUFFER = 8 << 20
DEFAULT_SEND_BUFFER = 200_000


class RawJSON(str):
    """A reply's value already written as JSON: sent as it is, without the encoder's pass."""


class Trailing(RawJSON):
    """A reply's value written as JSON that says the lengths of ``data``: bytes sent raw right after
    the reply's line (a listing's output, a megabyte), which no side encodes, escapes or scans."""

    def __new__(cls, text: str, data: bytes):
        value = super().__new__(cls, text)
        value.data = data
        return value


def encode(reply: dict) -> bytes:
    raw = {key: value for key, value in reply.items() if isinstance(value, RawJSON)}
    if not raw:
        return json.dumps(reply).encode() + b"\n"
    head = json.dumps({key: value for key, value in reply.items() if key not in raw})[:-1]
    tail = ", ".join(f"{json.dumps(key)}: {value}" for key, value in raw.items())
    line = (head + (", " if head != "{" else "") + tail + "}\n").encode()
    trailing = [value.data for value in raw.values() if isinstance(value, Trailing)]
    return b"".join([line, *trailing]) if trailing else line


class Conn:
    def __init__(self, sock: socket.socket, uid: int = -1, gid: int = -1):
        self.sock = sock
        self.uid, self.gid = uid, gid  # the peer's, from SO_PEERCRED: never from what it sends
        self.inbuf = b""
        self.outbuf = b""
        self.send_buffer = 0  # the send buffer asked for, once a reply outgrew the usual one
        self.deferred = 0  # replies still owed (``wait``)
        self.eof = False
        self.op = None  # the last request's op: a reply undone with its turn is rewritten for it


class SocketServer:
    """Accept, read, answer (mixed into ``Controller``)."""

    def answer(self, conn: Conn, reply: dict) -> None:
        self.replies.append((conn, reply))

    def send(self, conn: Conn, reply: dict) -> None:
        if conn.sock.fileno() < 0:
            return
        conn.outbuf += encode(reply)
        if len(conn.outbuf) > max(conn.send_buffer, DEFAULT_SEND_BUFFER):
            conn.send_buffer = min(len(conn.outbuf), MAX_SEND_BUFFER)
            try:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, conn.send_buffer)
            except OSError:
                pass  # sent over several turns, as before
        self.flush(conn)

    def flush(self, conn: Conn) -> None:
        try:
            while conn.outbuf:
                sent = conn.sock.send(conn.outbuf)
                conn.outbuf = conn.outbuf[sent:]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.drop(conn)
            return
        self._interest(conn)

    def _interest(self, conn: Conn) -> None:
        if conn.eof and not conn.outbuf and conn.deferred <= 0:
            self.drop(conn)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        try:
            self.sel.modify(conn.sock, events, ("conn", conn))
        except (KeyError, ValueError):
            pass

    def drop(self, conn: Conn) -> None:
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        self.conns.pop(id(conn), None)
        self.waiters = [waiter for waiter in self.waiters if waiter[0] is not conn]
        try:
            conn.sock.close()
        except OSError:
            pass

    def listen(self) -> None:
        path = paths.socket_path(self.home)
        try:
            os.unlink(path)  # left by a controller that died: we hold the lock now
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.socket_inode = os.stat(path).st_ino
        sock.listen(128)
        sock.setblocking(False)
        self.listener = sock
        self.sel.register(sock, selectors.EVENT_READ, ("listen", None))

    def unlisten(self) -> None:
        if self.listener is None:
            return
        try:
            self.sel.unregister(self.listener)
        except (KeyError, ValueError):
            pass
        path = paths.socket_path(self.home)
        try:
            if os.stat(path).st_ino == self.socket_inode:  # never remove a successor's socket
                os.unlink(path)
        except OSError:
            pass
        self.listener.close()
        self.listener = None

    def accept(self) -> list[Conn]:
        """The connections waiting, accepted."""
        accepted: list[Conn] = []
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return accepted
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    return accepted
                raise
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, gid = struct.unpack("3i", creds)
            if uid not in (self.uid, 0):
                sock.close()
                continue
            sock.setblocking(False)
            conn = Conn(sock, uid, gid)
            self.conns[id(conn)] = conn
            self.sel.register(sock, selectors.EVENT_READ, ("conn", conn))
            accepted.append(conn)

    def read(self, conn: Conn) -> list[bytes]:
        try:
            data = conn.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data = b""
        if not data:
            conn.eof = True
            lines = [conn.inbuf] if conn.inbuf.strip() else []
            conn.inbuf = b""
            return lines
        conn.inbuf += data
        *lines, conn.inbuf = conn.inbuf.split(b"\n")
        return [line for line in lines if line.strip()]
