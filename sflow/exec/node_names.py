"""Virtual node names resolve inside local jobs, and each node's processes see its name as the hostname.

Every local node of a slurm.conf cluster gets a loopback address of its own
(``127.100.0.1`` for the first node, ``127.100.0.2`` for the second...; all of
127/8 reaches this machine). ``hosts`` in the state directory lists them
ahead of the machine's own /etc/hosts lines. Each process that starts on a
node (the batch step, every local srun task) enters new mount and UTS
namespaces between fork and exec: that file bind-mounted over /etc/hosts, the
hostname set to the node's name. The network is still the machine's, so a
task on node2 reaches a server on node1 by the name ``node1``.

An ordinary user gets the two namespaces inside a user namespace of their own
that maps their uid and gid to themselves (root needs none): files, signals,
the controller's socket and ``ps`` see the same user; the capabilities the
new namespace grants end at exec. The work is a few system calls (ctypes) in
the forked child, so no extra process or interpreter starts per task; the
controller, as root, makes them once per node in a thread of that node's and
starts the node's batch steps from there.

Nothing of this happens on the default one-node cluster named after the
machine, nor with ``NodeNameResolution=NO`` in slurm.conf. Where the kernel
refuses the namespaces, jobs run as before and their stderr says so once.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from typing import NamedTuple

SETTING = "NodeNameResolution"
DOCS = 'see "Multi-node rendezvous" in docs/cluster.md'
# First address of the nodes: far from 127.0.0.1 and Debian's 127.0.1.1 for the machine's name.
_FIRST_ADDRESS = (127 << 24) | (100 << 16)

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWUSER = 0x10000000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000


class NodeNames(NamedTuple):
    """How a cluster's local jobs start their processes: ``hosts_file`` is bind-mounted over
    /etc/hosts ("" for not at all); ``problem`` says why node names cannot resolve, when they
    should but the kernel refuses."""

    hosts_file: str = ""
    problem: str | None = None


# ------------------------------------------------------------------ the hosts file (controller side)


def node_address(index: int) -> str:
    """The loopback address of the cluster's node at ``index`` (0 for the first in slurm.conf);
    the last byte never 0 or 255, which some programs take for a network or broadcast address."""
    offset = (index // 254) * 256 + index % 254 + 1
    value = _FIRST_ADDRESS + offset
    return ".".join(str((value >> shift) & 255) for shift in (24, 16, 8, 0))


def local_nodes(cluster) -> list[tuple[int, object]]:
    """(index in slurm.conf, node) of the nodes jobs run on on this machine: those of a local
    partition, and those of none."""
    remote = {name for part in cluster.partitions if part.backend != "local" for name in part.nodes}
    local = {name for part in cluster.partitions if part.backend == "local" for name in part.nodes}
    return [(i, node) for i, node in enumerate(cluster.nodes) if node.name in local or node.name not in remote]


def enabled(cluster) -> bool:
    """slurm.conf leaves node names on (the default) and some local node is not this machine."""
    setting = (cluster.config_value(SETTING) or "YES").strip().upper()
    if setting in ("NO", "N", "0", "FALSE"):
        return False
    machine = os.uname().nodename.split(".")[0]
    return any(node.name != machine for _, node in local_nodes(cluster))


def hosts_text(cluster, machine_hosts: str) -> str:
    """The nodes' lines, then the machine's own with the nodes' names taken out of them (the
    first line naming a host is the one a lookup finds)."""
    lines = ["# Written by sflow from its slurm.conf: the local nodes, then this machine's /etc/hosts.\n"]
    names: set[str] = set()
    for index, node in local_nodes(cluster):
        aliases = [node.name] + ([node.hostname] if node.hostname and node.hostname != node.name else [])
        names.update(aliases)
        lines.append(f"{node_address(index)}\t{' '.join(aliases)}\n")
    for line in machine_hosts.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and names.intersection(words[1:]):
            kept = [w for w in words[1:] if w not in names]
            if not kept:
                continue
            line = "\t".join([words[0], *kept])
        lines.append(line + "\n")
    return "".join(lines)


def write_hosts(cluster, hosts_file: str, machine_hosts_file: str = "/etc/hosts") -> None:
    """Write the hosts file when its contents change. Replaced, never edited in place: a running
    job keeps the file it mounted."""
    try:
        with open(machine_hosts_file, encoding="utf-8", errors="surrogateescape") as handle:
            machine = handle.read()
    except OSError:
        machine = "127.0.0.1\tlocalhost\n"
    text = hosts_text(cluster, machine)
    try:
        with open(hosts_file, encoding="utf-8", errors="surrogateescape") as handle:
            if handle.read() == text:
                return
    except OSError:
        pass
    temporary = f"{hosts_file}.{os.getpid()}.tmp"
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), "w",
              encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(text)
    os.replace(temporary, hosts_file)


_probed: dict[str, str | None] = {}


def prepare(cluster, hosts_file: str) -> NodeNames:
    """The cluster's hosts file written (the controller's is ``sflow.queue.paths.hosts_path``), and
    whether this machine lets a process enter a node (found out once per hosts file and process, by
    starting ``/bin/sh -c :`` that way)."""
    if not enabled(cluster):
        return NodeNames()
    try:
        write_hosts(cluster, hosts_file)
    except OSError as err:
        return NodeNames("", f"{hosts_file} cannot be written ({err.strerror})")
    if hosts_file not in _probed:
        _probed[hosts_file] = _probe(hosts_file)
    problem = _probed[hosts_file]
    return NodeNames("" if problem else hosts_file, problem)


def _probe(hosts_file: str) -> str | None:
    enter = _entering("sflow-probe", hosts_file)

    def strict() -> None:
        try:
            enter()
        except OSError as err:
            os.write(2, refused(err).encode())
            os._exit(1)

    try:
        done = subprocess.run(["/bin/sh", "-c", ":"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, preexec_fn=strict, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        return str(err)
    if done.returncode == 0:
        return None
    return done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"


def refused(err: OSError) -> str:
    return f"the kernel refused the namespaces that provide them ({err.filename}: {err.strerror})"


def warning(problem: str) -> str:
    """The one line a job's stderr gets when its nodes' names cannot resolve."""
    return f"sflow: warning: node names do not resolve in this job, and hostname is this machine's: {problem}; {DOCS}\n"


# ------------------------------------------------------------------ starting a process on a node


_calls: tuple | None = None


def _libc() -> tuple:
    """libc's unshare, mount and sethostname, and ctypes' errno (Python 3.11 has no os.unshare)."""
    global _calls
    if _calls is None:
        import ctypes  # deferred: ~1.5 ms at srun's start; only a process that enters a node pays it

        libc = ctypes.CDLL(None, use_errno=True)
        libc.unshare.argtypes = [ctypes.c_int]
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
        libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        _calls = (libc.unshare, libc.mount, libc.sethostname, ctypes.get_errno)
    return _calls


def _entering(node_name: str, hosts_file: str):
    """A function for between fork and exec that puts the process on ``node_name``; it raises
    OSError (with the failed step as ``filename``) if the kernel refuses."""
    unshare, mount, sethostname, get_errno = _libc()
    uid, gid = os.getuid(), os.getgid()
    user_namespace = os.geteuid() != 0
    maps = ((b"/proc/self/setgroups", b"deny"), (b"/proc/self/uid_map", b"%d %d 1" % (uid, uid)),
            (b"/proc/self/gid_map", b"%d %d 1" % (gid, gid)))
    flags = _CLONE_NEWNS | _CLONE_NEWUTS | (_CLONE_NEWUSER if user_namespace else 0)
    source, name = os.fsencode(hosts_file), os.fsencode(node_name)

    def failed(step: str) -> OSError:
        number = get_errno()
        return OSError(number, os.strerror(number), step)

    def enter() -> None:
        if unshare(flags) != 0:
            raise failed("unshare")
        if user_namespace:
            for path, text in maps:
                try:
                    fd = os.open(path, os.O_WRONLY)
                    try:
                        os.write(fd, text)
                    finally:
                        os.close(fd)
                except OSError as err:
                    raise OSError(err.errno, err.strerror, f"writing {os.fsdecode(path)}") from None
        # Private first: the bind mount below must not reach the machine's own /etc/hosts.
        if mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            raise failed("mount --make-rprivate /")
        if mount(source, b"/etc/hosts", None, _MS_BIND, None) != 0:
            raise failed("mount --bind /etc/hosts")
        if sethostname(name, len(name)) != 0:
            raise failed("sethostname")

    return enter


class _NodeThread:
    """A thread that entered a node's namespaces once, for good, and starts that node's processes.

    Mount and UTS namespaces belong to a thread, and a child inherits its creator's: a process
    started from here is on the node without any code between fork and exec, so Python can
    vfork instead of copying the whole (large) parent, several times faster. Only without a user
    namespace (root): a threaded process cannot enter a new one."""

    def __init__(self, node_name: str, hosts_file: str):
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.ready = threading.Event()
        self.error: OSError | None = None
        enter = _entering(node_name, hosts_file)
        thread = threading.Thread(target=self._serve, args=(enter,), name=f"node {node_name}", daemon=True)
        thread.start()
        self.ready.wait()

    def _serve(self, enter) -> None:
        try:
            enter()
        except OSError as err:
            self.error = err
        self.ready.set()
        if self.error is not None:
            return
        while True:
            request = self.requests.get()
            if request is None:
                return
            work, done, box = request
            try:
                box.append((True, work()))
            except BaseException as err:  # handed to the caller's thread
                box.append((False, err))
            done.set()

    def submit(self, work):
        """Have ``work`` done in this thread; the function returned waits for its result."""
        done, box = threading.Event(), []
        self.requests.put((work, done, box))

        def result():
            done.wait()
            ok, value = box[0]
            if not ok:
                raise value
            return value

        return result

    def stop(self) -> None:
        self.requests.put(None)


_node_threads: dict[str, tuple[tuple, _NodeThread | None]] = {}
_threads_lock = threading.Lock()


def _node_thread(node_name: str, hosts_file: str) -> _NodeThread | None:
    """The node's thread for the hosts file and this machine's mounts as they are now, or None
    where one cannot be had. The hosts file is replaced, never edited, when the cluster changes;
    a file system mounted since a thread began would be missing from its copy of the mounts: either
    way the node gets a new thread (a job started as before keeps what it had)."""
    if os.geteuid() != 0:
        return None
    try:
        info = os.stat(hosts_file)
        with open("/proc/self/mountinfo", "rb") as handle:
            mounts = handle.read()
    except OSError:
        return None
    key = (hosts_file, info.st_ino, info.st_mtime_ns, mounts)
    with _threads_lock:
        known = _node_threads.get(node_name)
        if known is not None and known[0] == key:
            return known[1]
        if known is not None and known[1] is not None:
            known[1].stop()
        made = _NodeThread(node_name, hosts_file)
        thread = None if made.error is not None else made  # refused: the pre-exec way says why
        _node_threads[node_name] = (key, thread)
        return thread


def start_on_node(argv: list[str], node_name: str, hosts_file: str, **popen_args):
    """``popen_on_node`` for a long-lived process (the controller), begun now: the function
    returned gives its Popen (or raises its error). As root, on a named node, a thread of the
    node's own (``_NodeThread``) starts it meanwhile, so the caller can prepare the next one."""
    if hosts_file:
        thread = _node_thread(node_name, hosts_file)
        if thread is not None:
            return thread.submit(lambda: subprocess.Popen(argv, **popen_args))
    try:
        popen = popen_on_node(argv, node_name, hosts_file, **popen_args)
    except Exception as err:  # raised when asked for, as the thread's would be
        failure = err

        def raising():
            raise failure

        return raising
    return lambda: popen


def popen_on_node(argv: list[str], node_name: str, hosts_file: str, *, setup=None, threaded: bool = False,
                  **popen_args):
    """``subprocess.Popen(argv, **popen_args)`` as a process of node ``node_name``: with the
    node's /etc/hosts and hostname when ``hosts_file`` is set, after ``setup`` (a pre-exec step
    of the caller's: its own process group, a terminal) has run in the child. A refusal here (the
    kernel allowed it when the cluster was read) costs the process its node name, with one line
    on its stderr, never its start. ``threaded``: a long-lived process (the controller) may start
    it from a thread of the node's own (``_NodeThread``)."""
    if not hosts_file:
        return subprocess.Popen(argv, preexec_fn=setup, **popen_args)
    if threaded and setup is None:
        return start_on_node(argv, node_name, hosts_file, **popen_args)()
    enter = _entering(node_name, hosts_file)

    def on_node() -> None:
        if setup is not None:
            setup()
        try:
            enter()
        except OSError as err:
            os.write(2, warning(refused(err)).encode())

    return subprocess.Popen(argv, preexec_fn=on_node, **popen_args)
