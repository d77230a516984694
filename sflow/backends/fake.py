"""A backend that answers from a script: the controller's side of the seam, tested without a market.

In the spirit of a mock transport: ``answer(job, request)`` decides each allocation (an
``Allocation``, or a ``Pending`` whose reason squeue shows; by default the job waits for
``Resources``), and the events a test ``push``es are handed to the controller at its next
turn. Its nodes are not the local cluster's (``on_this_machine`` False), but carry no address,
so their batch step runs on this machine like a local one.
"""

from __future__ import annotations

from typing import Callable

from sflow.backends.base import Allocation, Checked, Event, Pending

Answer = Callable[[object, object], "Allocation | Pending"]


class FakeBackend:
    name = "fake"
    on_this_machine = False
    wake_fd = None  # a test pushes between turns: nothing to wake
    recheck_seconds = 1.0
    verdict_seconds = 0.0  # a step that vanishes is decided at once
    verdict_patience = 0.0

    def __init__(self, answer: Answer | None = None):
        self.answer = answer or (lambda job, request: Pending("Resources"))
        self.pushed: list[Event] = []
        self.held: dict[int, Allocation] = {}  # allocations given and not released, by job id
        self.withdrawn: list[int] = []
        self.outcomes: list[tuple[int, int, str]] = []  # (job id, run, how it ended)
        self.costs: dict[int, float] = {}
        self.checked = Checked()  # every submission's answer (a test may set a plan)
        self.checks: list[tuple[object, int]] = []  # (request, time limit) of each check asked

    def push(self, *events: Event) -> None:
        self.pushed.extend(events)

    # ------------------------------------------------------------ the seam

    def check(self, request, partitions: list, limit: int, env: dict, now: float) -> Checked:
        self.checks.append((request, limit))
        return self.checked


    def allocate(self, job, request, now: float | None = None, task: int | None = None) -> Allocation | Pending:
        outcome = self.answer(job, request)
        if isinstance(outcome, Allocation):
            self.held[job.job_id] = outcome
        return outcome

    def release(self, allocation: Allocation) -> None:
        self.held.pop(allocation.job_id, None)

    def restore(self, allocation: Allocation) -> None:
        self.held[allocation.job_id] = allocation

    def events(self, now: float) -> list[Event]:
        events, self.pushed = self.pushed, []
        return events

    def busy(self) -> bool:
        return bool(self.pushed)

    def recover(self, live_jobs: set[int]) -> None:
        pass

    def resync(self) -> None:
        pass

    def close(self) -> None:
        pass

    # ------------------------------------------------------------ asked of a backend elsewhere

    def withdraw(self, job_id: int, task: int | None = None) -> None:
        self.withdrawn.append(job_id)

    def record_outcome(self, job_id: int, run: int, outcome: str) -> None:
        self.outcomes.append((job_id, run, outcome))

    def split_task(self, array_job_id: int, task: int, task_job_id: int) -> None:
        pass

    def task_rows(self, array_job_id: int) -> dict:
        return {}

    def job_cost_cents(self, job_id: int) -> float | None:
        return self.costs.get(job_id)

    def lost_to_market(self, job) -> bool:
        return False

    def look_back(self, job) -> None:
        pass

    def still_looking(self, job) -> bool:
        return False


__all__ = ["FakeBackend"]
