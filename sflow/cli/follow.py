"""``flow run``: submit, show the wait, stream the output as it is written, exit with the job's code."""

from __future__ import annotations

import os
import sys
import time

from sflow.records import FINISHED_STATES

POLL_SECONDS = 0.1


def _say(text: str) -> None:
    print(f"flow: {text}", file=sys.stderr, flush=True)


def output_paths(job) -> tuple[str, str]:
    """The files the job really writes (patterns like %N are known once it runs)."""
    from sflow.cli.common import home
    from sflow.exec.batch import output_paths as paths
    from sflow.exec.srun import load_context

    context = load_context(home(), job.job_id)
    if context is None:
        return job.stdout, job.stderr
    from sflow.cli.common import call  # noqa: F401  (keeps the import graph flat for the shims)
    request = _request(job.job_id)
    if request is None:
        return job.stdout, job.stderr
    out, err, _ = paths(context, request.stdout_pattern, request.error, None)
    return out, err


def _request(job_id: int):
    from sflow.cli.common import home
    from sflow.queue import store
    from sflow.slurm.model import JobRequest

    conn = store.reader(home())
    if conn is None:
        return None
    text = store.load_request(conn, job_id)
    if text is None:  # an array task: the request is kept once, under the array's id
        row = conn.execute("SELECT array_job_id FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row and row[0] is not None:
            text = store.load_request(conn, row[0])
    return JobRequest.model_validate_json(text) if text else None


class Tail:
    """Copy what is appended to a file to a stream, from where we last stopped."""

    def __init__(self, path: str, sink):
        self.path, self.sink, self.offset = path, sink, 0

    def pump(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return
        if data:
            self.offset += len(data)
            self.sink.write(data)
            self.sink.flush()


def _exit_code(jobs) -> int:
    worst = max(jobs, key=lambda j: (j.exit_code, j.exit_signal, j.state != "COMPLETED"))
    if worst.exit_code:
        return worst.exit_code
    if worst.exit_signal:
        return 128 + worst.exit_signal
    return 0 if worst.state == "COMPLETED" else 1


def follow(job_id: int) -> int:
    from sflow.cli.common import read_jobs

    shown_state = None
    tails: dict[int, tuple[Tail, Tail | None]] = {}
    while True:
        jobs = read_jobs("job_id = ? OR array_job_id = ?", (job_id, job_id))
        if not jobs:
            _say(f"job {job_id} is gone")
            return 1
        for job in jobs:
            if job.state != "PENDING" and job.job_id not in tails:
                out, err = output_paths(job)
                label = f"job {job_id}" + (f" task {job.array_task_id}" if job.array_task_id is not None else "")
                _say(f"{label} running on {job.nodelist}; output: {out}")
                tails[job.job_id] = (Tail(out, sys.stdout.buffer), Tail(err, sys.stderr.buffer) if err != out else None)
        for out_tail, err_tail in tails.values():
            out_tail.pump()
            if err_tail:
                err_tail.pump()
        pending = [j for j in jobs if j.state == "PENDING"]
        state = (pending[0].state, pending[0].reason) if pending and not tails else None
        if state and state != shown_state:
            _say(f"job {job_id} pending ({state[1]})")
            shown_state = state
        if all(j.state in FINISHED_STATES and not j.array_task_str for j in jobs):
            for out_tail, err_tail in tails.values():
                out_tail.pump()
                if err_tail:
                    err_tail.pump()
            states = sorted({j.state for j in jobs})
            code = _exit_code(jobs)
            _say(f"job {job_id} {', '.join(states)} (exit code {code})")
            return code
        time.sleep(POLL_SECONDS)


def submit_and_follow(sbatch_args: list[str], backend: str | None = None) -> int:
    from sflow.cli.common import call
    from sflow.cli.submit_context import identity, read_stdin_script

    env = dict(os.environ)
    if backend:
        env["SFLOW_BACKEND"] = backend
    stdin = read_stdin_script() if not any(not a.startswith("-") for a in sbatch_args) else None
    reply = call("submit", argv=sbatch_args, env=env, cwd=os.getcwd(), stdin=stdin, **identity())
    if reply.get("stderr"):
        sys.stderr.write(reply["stderr"])
    if not reply.get("ok"):
        return reply.get("exit_code", 1)
    job_id = reply["job_id"]
    _say(f"submitted batch job {job_id}")
    try:
        return follow(job_id)
    except KeyboardInterrupt:
        answer = "y"
        if sys.stdin is not None and sys.stdin.isatty():
            try:
                answer = input(f"\nCancel job {job_id}? [y/N] ").strip().lower()
            except (EOFError, KeyboardInterrupt):
                answer = "y"
        if answer.startswith("y"):
            call("cancel", job_specs=[str(job_id)], uid=os.getuid())
            _say(f"job {job_id} cancelled")
        else:
            _say(f"job {job_id} keeps running; follow it with: flow logs -f {job_id}")
        return 130
