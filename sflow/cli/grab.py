"""``flow grab N [GPU] [-- COMMAND...]``: hold N nodes until released, as salloc holds an allocation.

The allocation is held as salloc holds one: a placeholder job whose batch
step only keeps the nodes, ended through the controller's
``finish_allocation``. Its one line of output says it runs, which on Mithril
means every node was reached and the submit directory staged. On Mithril its nodes are the instances of one bid, so
releasing it deletes the bid. While it waits, the bidding is shown as
``flow run`` shows it.

Without a command it holds until Ctrl-C, SIGTERM or SIGHUP (the terminal
closing), or until the job ends (``scancel JOB``, the time limit). With one it
runs the command here in the allocation's environment, as salloc does, and
releases when the command ends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from sflow.cli.allocation import release as finish, sbatch_args
from sflow.cli.common import call, home, reader
from sflow.cli.follow import BidNews
from sflow.cli.render import submission
from sflow.cli.submit_context import environment, identity
from sflow.errors import SflowError
from sflow.exec.env import batch_environment
from sflow.exec.srun import load_context

READY = "sflow grab: holding"
# salloc's holder, saying first that it runs: on Mithril that means every node was reached
# (its host key pinned, for flow ssh) and the submit directory staged (for srun from here).
HOLDER_SCRIPT = f"#!/bin/sh\n# Holds an allocation for flow grab; ended by its owner.\necho '{READY}'\n" \
                "while :; do sleep 3600; done\n"
RELEASE_WAIT = 10.0  # seconds for the holder to end after release before it is cancelled
INSTANCE_TYPE = re.compile(r"\d+x[A-Za-z0-9-]+|it_\w+")


class GrabError(SflowError):
    pass


def _say(text: str) -> None:
    print(f"flow: {text}", file=sys.stderr, flush=True)


class Released(Exception):
    """A signal asked for the allocation to go."""


def _release_on(signum, frame) -> None:
    raise Released(signal.Signals(signum).name)


def gpu_request(word: str | None) -> tuple[list[str], dict]:
    """(sbatch options, SFLOW_* settings) for GPU: ``h100`` (at least one per node), ``h100:8``, ``8xh100``."""
    if not word:
        return [], {}
    if INSTANCE_TYPE.fullmatch(word):
        return [], {"SFLOW_INSTANCE_TYPE": word}
    kind, _, count = word.partition(":")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", kind) or (count and not count.isdecimal()):
        raise GrabError(f"{word!r} is not a GPU: give a type (h100), a type and count per node (h100:8) "
                        "or an instance type (8xh100)")
    return [f"--gpus-per-node={kind}:{count or 1}"], {}


def parse(argv: list[str]) -> tuple[list[str], dict, list[str], str]:
    """(sbatch options, environment additions, command, nodes) from ``[OPTIONS] N [GPU] [-- COMMAND...]``."""
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    alloc_args, positionals = sbatch_args("salloc", argv)
    if not positionals or len(positionals) > 2:
        raise GrabError("usage: flow grab N [GPU] [-- COMMAND...], e.g. flow grab 2 h100")
    nodes = positionals[0]
    if not re.fullmatch(r"[1-9]\d*", nodes):
        raise GrabError(f"{nodes!r} is not a number of nodes")
    gpu_args, extra_env = gpu_request(positionals[1] if len(positionals) > 1 else None)
    return [*alloc_args, "--nodes", nodes, *gpu_args], extra_env, command, nodes


def submit(sbatch_args: list[str], extra_env: dict, backend: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(extra_env)
    if backend:
        env["SFLOW_BACKEND"] = backend
    output = os.path.join(home(), "jobs", "%j", "grab.out")
    reply = call("submit", argv=["--job-name", "grab", "--output", output, *sbatch_args],
                 env=env, cwd=os.getcwd(), script=HOLDER_SCRIPT, **identity())
    shown = submission(reply)
    if not shown["ok"]:
        sys.stderr.write(shown["stderr"].replace("sbatch:", "flow grab:"))
        raise SystemExit(shown["exit_code"])
    if shown["stderr"]:
        sys.stderr.write(shown["stderr"])
    return reply["job_id"]


def wait_running(job_id: int):
    """The job's record and context once it runs; the bidding is shown meanwhile."""
    news = None
    announced = False
    store = reader()
    while True:
        job = store.job(job_id)
        if news is None and job.backend == "mithril":
            news = BidNews(job_id)
        if news is not None:
            news.update(job)
        if job.state == "RUNNING":
            context = load_context(home(), job_id)
            if context is not None and _holding(job_id):
                return job, context, news
        elif job.state != "PENDING":
            raise GrabError(f"job {job_id} ended ({job.state}) before it was allocated")
        elif news is None and not announced:
            _say(f"job {job_id} queued and waiting for resources ({job.reason})")
            announced = True
        time.sleep(0.1)


def _holding(job_id: int) -> bool:
    try:
        with open(os.path.join(home(), "jobs", str(job_id), "grab.out")) as handle:
            return READY in handle.read()
    except OSError:
        return False


def describe(job, context) -> list[str]:
    count = len(context.nodes)
    where = "this machine (local backend)" if job.backend != "mithril" else "Mithril"
    lines = [f"job {job.job_id} holds {count} node{'s' if count != 1 else ''} on {where}: {job.nodelist}"]
    for i, node in enumerate(context.nodes):
        lines.append(f"  flow ssh {job.job_id} --node {i}    # {node.name}")
    lines.append(f"  srun --jobid={job.job_id} -N {count} hostname    # a step across the nodes")
    lines.append(f"release it with Ctrl-C here, or scancel {job.job_id}")
    return lines


def release(job_id: int, code: int) -> str:
    """End the allocation (its bid is deleted); its final state."""
    finish(job_id, code)
    deadline = time.monotonic() + RELEASE_WAIT
    cancelled = False
    store = reader()
    while True:
        job = store.job(job_id)
        if job.state not in ("PENDING", "RUNNING", "COMPLETING", "SUSPENDED"):
            return job.state
        if not cancelled and time.monotonic() > deadline:
            call("cancel", job_specs=[str(job_id)], uid=os.getuid())  # it was still starting: cancel it
            cancelled = True
        time.sleep(0.1)


def hold(job_id: int) -> str | None:
    """Until a signal asks for release (None) or the job ends by itself (its state)."""
    store = reader()
    while True:
        job = store.job(job_id)
        if job.state not in ("RUNNING", "COMPLETING", "SUSPENDED"):
            return job.state
        time.sleep(0.2)


def run_command(command: list[str], context) -> int:
    env = batch_environment(context, environment())
    env.pop("ENVIRONMENT", None)  # an interactive command, not a batch script
    try:
        return subprocess.call(command, env=env)
    except OSError as exc:
        _say(f"{command[0]}: {exc.strerror}")
        return 127


def main(argv: list[str], backend: str | None = None) -> int:
    sbatch_args, extra_env, command, nodes = parse(argv)
    previous = {s: signal.signal(s, _release_on) for s in (signal.SIGTERM, signal.SIGHUP)}
    job_id = None
    code = 0
    try:
        job_id = submit(sbatch_args, extra_env, backend)
        _say(f"submitted allocation job {job_id} for {nodes} node{'s' if nodes != '1' else ''}")
        job, context, news = wait_running(job_id)
        for line in describe(job, context):
            _say(line)
        if command:
            code = run_command(command, context)
        else:
            ended = hold(job_id)
            if ended is not None:
                _say(f"job {job_id} ended ({ended}); the allocation is gone")
                if news is not None:
                    news.final()
                job_id = None
                return 1 if ended != "COMPLETED" else 0
    except (KeyboardInterrupt, Released):
        code = 130
        print(file=sys.stderr)
    except GrabError as err:
        _say(f"error: {err}")
        job_id = None
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if job_id is not None:
            _finish(job_id, code)
    return code


def _finish(job_id: int, code: int) -> None:
    # A second Ctrl-C must not leave the bid behind half-released.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _say(f"releasing job {job_id}")
        state = release(job_id, 0 if code == 130 else code)
        job = reader().job(job_id)
        if job is not None and job.backend == "mithril":
            BidNews(job_id).final(lead=f"released ({state}); bid deleted; ")
        else:
            _say(f"released ({state})")
    finally:
        signal.signal(signal.SIGINT, previous)


__all__ = ["gpu_request", "main", "parse"]
