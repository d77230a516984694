"""Job dependencies: may a waiting job go, must it wait, or will it never go?

Pure: the controller hands in a ``Lookup`` of the other jobs. SLURM's rules
(sbatch(1) ``--dependency``), as SLURM 22.05 applies them:

- ``after:id[+min]``: the target started (or was cancelled before starting), ``min`` minutes ago;
- ``afterany``: the target ended; ``afterok`` / ``afternotok``: it ended well / badly;
- ``aftercorr``: task N of this array waits for task N of the other (afterok semantics);
- ``singleton``: no other job of this name and user is running, or waiting ahead of it;
- an id SLURM does not know (never existed) is satisfied;
- an array id without a task means every task of it.

``evaluate`` also renders what ``scontrol``/``squeue %E`` show: satisfied items
drop out, the others carry ``(unfulfilled)`` or ``(failed)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sflow.records import FINISHED_STATES

OK, WAIT, NEVER = "ok", "wait", "never"


@dataclass
class Target:
    """What a dependency needs to know of one job (or array task)."""

    state: str
    exit_code: int = 0
    exit_signal: int = 0
    start_time: float | None = None
    end_time: float | None = None


class Lookup:
    """The controller's view of other jobs; subclassed over the store and the live jobs."""

    def job(self, job_id: int) -> Target | None:  # a plain job or one array task record
        raise NotImplementedError

    def array(self, array_job_id: int) -> list[Target] | None:  # every task, pending ones included
        raise NotImplementedError

    def task(self, array_job_id: int, index: int) -> Target | None:
        raise NotImplementedError

    def singleton_blocked(self, name: str, user: str, job_id: int, seq: int) -> bool:
        raise NotImplementedError


def _one(kind: str, target: Target, delay: int, now: float) -> str:
    finished = target.state in FINISHED_STATES
    if kind == "after":
        if target.state == "PENDING" or (target.start_time is None and not finished):
            return WAIT
        since = target.start_time if target.start_time is not None else (target.end_time or now)
        return OK if now >= since + delay * 60 else WAIT
    if not finished:
        return WAIT
    good = target.state == "COMPLETED" and target.exit_code == 0 and target.exit_signal == 0
    if kind == "afterany":
        return OK
    if kind in ("afterok", "aftercorr"):
        return OK if good else NEVER
    if kind == "afternotok":
        return NEVER if good else OK
    return OK  # afterburstbuffer: no burst buffers here


def _many(kind: str, targets: list[Target], delay: int, now: float) -> str:
    """An array as a whole: every task must satisfy; afternotok needs one failure among ended tasks."""
    if kind == "afternotok":
        if any(t.state not in FINISHED_STATES for t in targets):
            return WAIT
        return OK if any(_one(kind, t, 0, now) == OK for t in targets) else NEVER
    results = [_one(kind, t, delay, now) for t in targets]
    if NEVER in results:
        return NEVER
    return OK if all(r == OK for r in results) else WAIT


def item_state(item, lookup: Lookup, *, job_id: int, name: str, user: str, seq: int,
               task_index: int | None, now: float) -> str:
    if item.kind == "singleton":
        return WAIT if lookup.singleton_blocked(name, user, job_id, seq) else OK
    ref = str(item.job_id)
    base, _, index = ref.partition("_")
    try:
        target_id = int(base)
    except ValueError:
        return OK
    if index and index != "*":
        try:
            target = lookup.task(target_id, int(index))
        except ValueError:
            return OK
        return OK if target is None else _one(item.kind, target, item.delay_minutes, now)
    tasks = lookup.array(target_id)
    if tasks is not None:
        if item.kind == "aftercorr" and task_index is not None:
            target = lookup.task(target_id, task_index)
            return OK if target is None else _one(item.kind, target, 0, now)
        return _many(item.kind, tasks, item.delay_minutes, now)
    target = lookup.job(target_id)
    if target is None:
        return OK  # SLURM lets a job go whose dependency names a job it does not know
    return _one(item.kind, target, item.delay_minutes, now)


def _item_text(item) -> str:
    if item.kind == "singleton":
        return "singleton"
    return f"{item.kind}:{item.job_id}" + (f"+{item.delay_minutes}" if item.delay_minutes else "")


def evaluate(dependency, lookup: Lookup, *, job_id: int, name: str, user: str, seq: int = 0,
             task_index: int | None = None, now: float) -> tuple[str, str]:
    """(``ok``/``wait``/``never``, the text scontrol shows) for a job's whole dependency."""
    if dependency is None or not dependency.items:
        return OK, ""
    states = [item_state(item, lookup, job_id=job_id, name=name, user=user, seq=seq,
                         task_index=task_index, now=now) for item in dependency.items]
    if dependency.any_of:
        if OK in states:
            return OK, ""
        verdict = NEVER if all(s == NEVER for s in states) else WAIT
        shown = list(zip(dependency.items, states))
    else:
        verdict = NEVER if NEVER in states else (OK if all(s == OK for s in states) else WAIT)
        if verdict == OK:
            return OK, ""
        shown = [(item, s) for item, s in zip(dependency.items, states) if s != OK]
    words = {WAIT: "unfulfilled", NEVER: "failed", OK: "fulfilled"}
    text = ("?" if dependency.any_of else ",").join(f"{_item_text(i)}({words[s]})" for i, s in shown)
    return verdict, text


__all__ = ["Lookup", "NEVER", "OK", "Target", "WAIT", "evaluate", "item_state"]
