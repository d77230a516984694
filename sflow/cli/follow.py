"""``flow run``: submit, show the wait, stream the output as it is written, exit with the job's code."""

from __future__ import annotations

import os
import sys
import time

from sflow.cli.common import call, home, reader
from sflow.cli.render import submission
from sflow.cli.submit_context import environment, identity
from sflow.exec.batch import output_paths as paths
from sflow.exec.srun import load_context
from sflow.mithril.money import dollars, per_gpu
from sflow.queue.store import read_bids
from sflow.records import FINISHED_STATES
from sflow.slurm.model import JobRequest
from sflow.views.costs import billed

POLL_SECONDS = 0.1


def _say(text: str) -> None:
    print(f"flow: {text}", file=sys.stderr, flush=True)


def output_paths(job) -> tuple[str, str]:
    """The files the job really writes (patterns like %N are known once it runs)."""
    context = load_context(home(), job.job_id)
    if context is None:
        return job.stdout, job.stderr
    request = _request(job.job_id)
    if request is None:
        return job.stdout, job.stderr
    out, err, _ = paths(context, request.stdout_pattern, request.error, None)
    return out, err


def _request(job_id: int):
    text = reader().request_json(job_id)
    return JobRequest.from_json(text) if text else None


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


SETTLE_SECONDS = 15.0  # how long the end waits for Mithril to confirm a deletion before showing the cost


def price_text(cents: int, gpus: int) -> str:
    """``$24.00/instance-hr ($3.00/GPU-hr)``, as plans show prices."""
    text = f"{dollars(cents)}/instance-hr"
    return f"{text} ({dollars(per_gpu(cents, gpus))}/GPU-hr)" if gpus else text


def clock(seconds: float) -> str:
    whole = int(max(0.0, seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def run_seconds(row, now: float) -> float:
    """How long the bid's instances were billed: first seen running until the bid was deleted."""
    starts = [i["running_since"] for i in row.instances if i.get("running_since") is not None]
    return max(0.0, (row.ended or now) - min(starts)) if starts else 0.0


def cost_text(rows, now: float | None = None) -> str:
    """``cost $0.42 for 2 instances x 0:03:12`` over every run of a job."""
    now = time.time() if now is None else now
    ran = [r for r in rows if run_seconds(r, now) > 0]
    quantity = max((r.plan.get("quantity", 1) for r in ran or rows), default=0)
    text = f"cost {billed(sum(r.cost_cents for r in rows))} for {quantity} instance{'s' if quantity != 1 else ''} x " \
           f"{clock(sum(run_seconds(r, now) for r in ran))}"
    return text + (f" over {len(ran)} runs" if len(ran) > 1 else "")


class BidNews:
    """What ``flow run`` says about a Mithril job's bids as they move.

    Everything comes from the controller's records: the ``bids`` table (what
    was bid for, the price won) and the job's pending reason (the market as
    the controller last saw it). The CLI never asks the API itself.
    """

    def __init__(self, job_id: int, say=None):
        self.job_id = job_id
        self.say = say or _say
        self.said: set[tuple[str, str]] = set()  # (bid key, what) already said
        self.reason: str | None = None

    def rows(self):
        return read_bids(home(), self.job_id)

    def update(self, job, rows=None) -> None:
        rows = self.rows() if rows is None else rows
        for row in rows:
            self._row(row)
        if job.state == "PENDING":
            self._reason(job.reason or "")
        else:
            self.reason = None

    def _once(self, row, what: str) -> bool:
        if (row.idempotency_key, what) in self.said:
            return False
        self.said.add((row.idempotency_key, what))
        return True

    def _row(self, row) -> None:
        plan = row.plan
        if row.status == "Refused" or (row.ended is not None and not self._known(row)):
            return  # nothing was bid, or a past run this command never saw
        reserved = plan.get("capacity") == "reserved"
        if self._once(row, "bid"):
            again = " again" if row.run else ""
            if reserved:
                self.say(f"Reserving {plan['quantity']} x {plan['type_name']} in {plan['region']} for "
                         f"{plan.get('hours', '?')} hours at up to {price_text(row.limit_cents, plan.get('gpus', 0))}...")
            else:
                self.say(f"Bidding{again} for {plan['quantity']} x {plan['type_name']} in {plan['region']} at up to "
                         f"{price_text(row.limit_cents, plan.get('gpus', 0))}...")
        if reserved:
            if (row.status == "Active" or row.started) and self._once(row, "won"):
                self.say(f"Reservation active; starting {plan['quantity']} instance"
                         f"{'s' if plan['quantity'] != 1 else ''}...")
            return
        allocated = row.status in ("Allocated", "Preempting") or row.started
        # The price once the market confirms it; a job already running does not wait for that.
        if allocated and (row.price_cents is not None or row.started) and self._once(row, "won"):
            count = plan["quantity"]
            price = f" at {price_text(row.price_cents, plan.get('gpus', 0))}" if row.price_cents is not None else ""
            self.say(f"Won{price}; starting {count} instance{'s' if count != 1 else ''}...")
        if row.status == "Preempting" and self._once(row, "preempting"):
            self.say(f"preempted: the spot price rose above the limit; job {self.job_id} has until the notice ends")

    def _known(self, row) -> bool:
        return (row.idempotency_key, "bid") in self.said

    def _reason(self, reason: str) -> None:
        if reason == self.reason:
            return
        self.reason = reason
        word, _, detail = reason.partition(": ")
        if word == "BidOpen":
            self.say(detail)
        elif word == "ReservationPending":
            self.say(f"reservation pending: {detail}")
        elif word not in ("BidPlacing", "BidAllocated", "ReservationActive"):  # the bid and win lines say these
            self.say(f"job {self.job_id} pending ({reason})")  # MithrilUnavailable, MithrilRefused, a hold...

    def final(self, settle: float = SETTLE_SECONDS, lead: str = "") -> None:
        """The cost, once Mithril confirmed every deletion and its billing record of each bid was read
        (or what is known after ``settle`` seconds)."""
        deadline = time.monotonic() + settle
        rows = self.rows()
        while not all(r.cost_settled for r in rows) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            rows = self.rows()
        if not rows:
            return
        if any(r.ended is None for r in rows):
            self.say(f"{cost_text(rows)} so far; the bid is still being deleted (see flow status {self.job_id})")
        elif not all(r.cost_settled for r in rows):
            self.say(f"{lead}{cost_text(rows)} (estimated; Mithril's billing record is still being read, "
                     f"see flow status {self.job_id})")
        else:
            self.say(lead + cost_text(rows))


def _pump_all(tails) -> None:
    for out_tail, err_tail in tails.values():
        out_tail.pump()
        if err_tail:
            err_tail.pump()


def follow(job_id: int) -> int:
    shown_state = None
    news: BidNews | None = None
    tails: dict[int, tuple[Tail, Tail | None]] = {}
    store = reader()
    while True:
        jobs = store.jobs(ids=[job_id])
        if not jobs:
            _say(f"job {job_id} is gone")
            return 1
        if news is None and jobs[0].backend == "mithril":
            news = BidNews(job_id)
        if news is not None:
            news.update(jobs[0])  # before the "running" line: the win comes first
        for job in jobs:
            if job.state != "PENDING" and job.job_id not in tails:
                out, err = output_paths(job)
                label = f"job {job_id}" + (f" task {job.array_task_id}" if job.array_task_id is not None else "")
                _say(f"{label} running on {job.nodelist}; output: {out}")
                tails[job.job_id] = (Tail(out, sys.stdout.buffer), Tail(err, sys.stderr.buffer) if err != out else None)
        _pump_all(tails)
        pending = [j for j in jobs if j.state == "PENDING"]
        state = (pending[0].state, pending[0].reason) if pending and not tails else None
        if state and state != shown_state and news is None:
            _say(f"job {job_id} pending ({state[1]})")
        shown_state = state
        if all(j.state in FINISHED_STATES and not j.array_task_str for j in jobs):
            _pump_all(tails)
            states = sorted({j.state for j in jobs})
            code = _exit_code(jobs)
            _say(f"job {job_id} {', '.join(states)} (exit code {code})")
            if news is not None:
                news.final()
            return code
        time.sleep(POLL_SECONDS)


def submit_and_follow(sbatch_args: list[str], script: str | None, backend: str | None = None) -> int:
    """``script``: the text the submission runs, read once by the caller (None for --wrap)."""
    env = environment()
    if backend:
        env["SFLOW_BACKEND"] = backend
    reply = call("submit", argv=sbatch_args, env=env, cwd=os.getcwd(), script=script, **identity())
    shown = submission(reply)
    if shown["stderr"]:
        sys.stderr.write(shown["stderr"])
    if not shown["ok"]:
        return shown["exit_code"]
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
            _after_cancel(job_id)
        else:
            _say(f"job {job_id} keeps running; follow it with: flow logs -f {job_id}")
        return 130


def _after_cancel(job_id: int) -> None:
    """A cancelled Mithril job: say when its bid is deleted, and what it cost."""
    job = reader().job(job_id)
    if job is None or job.backend != "mithril":
        return
    news = BidNews(job_id)
    if news.rows():
        news.final(lead="bid deleted; ")
