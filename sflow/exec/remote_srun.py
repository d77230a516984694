"""srun's tasks on the job's other nodes, over SSH: a cloud job's nodes are separate machines.

``srun`` runs a task here when its node is this one (``SLURMD_NODENAME``) or
has no address (a local virtual node), and through ``RemoteTasks`` when the
allocation gives the node an address. The task gets the same environment a
local task would (its own SLURM_PROCID, SLURM_NODEID...), less what belongs
to this machine (``sflow.exec.remote_env.portable``), in the same directory
relative to the login home. Output comes back as it is written, labelled
and to per-task files as srun's options say; signals srun receives go to
each remote task's process group.
"""

from __future__ import annotations

import os
import shlex
import threading

from sflow.exec.remote_env import portable, relative_to_home, submit_dir


def is_remote(node) -> bool:
    return bool(node.address) and node.name != os.environ.get("SLURMD_NODENAME")


class _Lines:
    """Prefixes every line of a byte stream (srun --label), keeping a partial line for later."""

    def __init__(self, write, prefix: bytes):
        self.write, self.prefix, self.rest = write, prefix, b""

    def __call__(self, data: bytes) -> None:
        data = self.rest + data
        *lines, self.rest = data.split(b"\n")
        if lines:
            self.write(b"".join(self.prefix + line + b"\n" for line in lines))

    def flush(self) -> None:
        if self.rest:
            self.write(self.prefix + self.rest)
            self.rest = b""


class RemoteTasks:
    def __init__(self, runner):
        self.runner = runner
        self.client = None
        self.running: list[tuple] = []  # (task, process, threads' finishers)
        self.threads: list[threading.Thread] = []
        self._closers: list = []

    def _client(self):
        if self.client is None:
            # deferred: asyncssh costs ~170 ms at srun's start; only a step on instances needs it
            from sflow.remote.client import SshClient

            self.client = SshClient(timeout=30)  # sflow's key and pins under SFLOW_HOME
        return self.client

    def _sink(self, stream, pattern: str | None, task, truncate: bool = True):
        """Where a task's stream goes: a per-task file, or srun's own output (labelled or not)."""
        runner = self.runner
        if pattern:
            fd = os.open(runner._pattern(pattern, task), os.O_WRONLY | os.O_CREAT | os.O_APPEND
                         | (os.O_TRUNC if truncate else 0), 0o644)
            self._closers.append(lambda: os.close(fd))
            return lambda data: os.write(fd, data)

        def write(data: bytes) -> None:
            with runner._lock:
                stream.write(data)
                stream.flush()

        if runner.req.label:
            lines = _Lines(write, f"{task.rank:>{runner._label_width}}: ".encode())
            self._closers.append(lines.flush)
            return lines
        return write

    def start(self, task, node, env: dict) -> None:
        # deferred: asyncssh, as above
        from sflow.remote.ssh import Target

        runner = self.runner
        cwd = self._cwd(runner.req.chdir or os.getcwd())
        out = self._sink(runner.out, runner.req.output, task)
        err = out if runner.req.output and not runner.req.error else self._sink(
            runner.err, runner.req.error, task, truncate=True)
        try:
            process = self._client().start(Target(node.address, pin=node.instance), shlex.join(runner.req.argv),
                                           env=portable(env, withheld=runner.job.withheld_env), cwd=cwd, on_stdout=out, on_stderr=err,
                                           capture=False)
        except Exception as exc:
            self._failed(task, node, str(exc))
            return
        thread = threading.Thread(target=self._wait, args=(task, node, process), daemon=True)
        thread.start()
        self.running.append((task, process))
        self.threads.append(thread)

    def _cwd(self, path: str) -> str:
        """The task's directory as the remote login shell finds it."""
        if os.environ.get("SFLOW_NODES"):  # on the job's first node: its home is laid out like the others'
            return relative_to_home(path, os.environ.get("HOME", ""))
        # From the submitting machine (salloc): the staged copy of the submit directory.
        job = self.runner.job
        rel = os.path.relpath(path, job.submit_dir)
        staged = submit_dir(job.job_id)
        return staged if rel == "." or rel.startswith("..") else f"{staged}/{rel}"

    def _failed(self, task, node, why: str) -> None:
        runner = self.runner
        with runner._lock:
            runner.err.write(f"srun: error: {node.name}: task {task.rank}: {why}\n".encode())
            runner.err.flush()
        task.exit_code = 255

    def _wait(self, task, node, process) -> None:
        result = process.wait()
        if result.error is not None:
            self._failed(task, node, result.error)
        elif result.signal:
            task.signal = result.signal
        else:
            task.exit_code = result.exit_status or 0
        if (task.exit_code or task.signal) and self.runner.req.kill_on_bad_exit:
            self.runner.signal(9)

    def signal(self, signum: int) -> None:
        for _, process in self.running:
            try:
                process.signal(signum, timeout=10)
            except Exception:
                pass

    def wait(self) -> None:
        for thread in self.threads:
            thread.join()
        for close in self._closers:
            close()
        if self.client is not None:
            self.client.close()


__all__ = ["RemoteTasks", "is_remote"]
