"""What a submitting command prints for the controller's answer, in SLURM's words.

The controller answers a submission with data (``sflow.queue.submit``): the job id, the
warnings, a typed error. This is the one place that turns it into sbatch's lines.
"""

from __future__ import annotations

import time

from sflow.errors import from_wire, render

# Where a start time that never comes is shown (the year 3000, as sbatch --test-only shows it).
NEVER_SHOWN = 32503680000


def submission(reply: dict) -> dict:
    """``reply`` to a submit as sbatch prints it: ``ok``, ``stdout``, ``stderr`` and ``exit_code``."""
    said = reply.get("listing", "") + "".join(f"sbatch: warning: {w}\n" for w in reply.get("warnings", ()))
    if reply.get("error") is not None:
        err = from_wire(reply["error"])
        return _shown(False, "", said + render("sbatch", err) + "\n", getattr(err, "exit_code", 1))
    if reply.get("test_only") is not None:
        return _shown(reply.get("ok", False), "", said + _test_only(reply["test_only"]),
                      0 if reply.get("ok") else 1)
    if reply.get("plan") is not None:
        return _shown(True, "", said + _plan(reply["plan"]) + "\n", 0)
    if not reply.get("ok"):  # the controller's own failure (a full disk, an internal error): said already
        return _shown(False, reply.get("stdout", ""), reply.get("stderr", ""), reply.get("exit_code", 1))
    return _shown(True, _job_id_line(reply), said, 0)


def _shown(ok: bool, stdout: str, stderr: str, exit_code: int) -> dict:
    return {"ok": ok, "stdout": stdout, "stderr": stderr, "exit_code": exit_code}


def _job_id_line(reply: dict) -> str:
    if reply.get("quiet"):
        return ""
    if reply.get("parsable"):
        return f"{reply['job_id']}\n"
    return f"Submitted batch job {reply['job_id']}\n"


def _test_only(answer: dict) -> str:
    if answer.get("refused"):
        return f"allocation failure: {answer['refused']}\n"
    start = answer.get("start")
    shown = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(min(start if start is not None else NEVER_SHOWN,
                                                                   NEVER_SHOWN)))
    nodes = answer["nodes"] if answer.get("nodes") is not None else "(null)"
    return (f"sbatch: Job {answer['job_id']} to start at {shown} using {answer['cpus']} processors on nodes "
            f"{nodes} in partition {answer['partition']}\n")


def _plan(fields: dict) -> str:
    """A Mithril plan as --test-only prints it."""
    from sflow.mithril.translate import Plan, format_plan  # deferred: pydantic (~30 ms) for a Mithril plan only

    return format_plan(Plan(**{**fields, "notes": tuple(fields.get("notes") or ())}))
