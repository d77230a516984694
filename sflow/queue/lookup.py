"""Dependency targets as the controller sees them: live jobs first, then the store.

Built once per scheduling pass; ended jobs do not change within a pass, so
their rows are read at most once each.
"""

from __future__ import annotations

from sflow.queue import deps

MAX_JOB_ID = 0xFFFFFFFF  # SLURM job ids are 32-bit
_COLUMNS = "job_id, state, exit_code, exit_signal, start_time, end_time, array_job_id, array_task_id"


def _target(rec) -> deps.Target:
    return deps.Target(rec.state, rec.exit_code, rec.exit_signal, rec.start_time, rec.end_time)


class JobLookup(deps.Lookup):
    def __init__(self, controller):
        self.ctl = controller
        self.rows: dict[int, tuple] = {}
        self.arrays: dict[int, list[tuple]] = {}
        self.live_arrays: dict[int, list] = {}
        for job in controller.jobs.values():
            if job.rec.array_job_id is not None:
                self.live_arrays.setdefault(job.rec.array_job_id, []).append(job)
        self.rivals: dict[tuple[str, str], list] = {}
        for job in controller.jobs.values():
            self.rivals.setdefault((job.rec.name, job.rec.user), []).append(job)

    def _row(self, job_id: int) -> tuple | None:
        if not 0 <= job_id <= MAX_JOB_ID:  # no such job, and SQLite takes no bigger integer
            return None
        if job_id not in self.rows:
            self.rows[job_id] = self.ctl.conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return self.rows[job_id]

    def _array_rows(self, array_job_id: int) -> list[tuple]:
        if not 0 <= array_job_id <= MAX_JOB_ID:
            return []
        if array_job_id not in self.arrays:
            self.arrays[array_job_id] = self.ctl.conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE array_job_id = ?", (array_job_id,)).fetchall()
        return self.arrays[array_job_id]

    @staticmethod
    def _from_row(row) -> deps.Target:
        return deps.Target(row[1], row[2] or 0, row[3] or 0, row[4], row[5])

    def job(self, job_id: int) -> deps.Target | None:
        live = self.ctl.jobs.get(job_id)
        if live is not None:
            return _target(live.rec)
        row = self._row(job_id)
        return self._from_row(row) if row else None

    def array(self, array_job_id: int) -> list[deps.Target] | None:
        rows = self._array_rows(array_job_id)
        if not rows:
            return None
        live = {job.job_id: job for job in self.live_arrays.get(array_job_id, [])}
        out = []
        for row in rows:
            job = live.get(row[0])
            if job is None:
                out.append(self._from_row(row))
                continue
            if job.is_array_remainder:
                out += [deps.Target("PENDING")] * len(job.pending_indices or [])
            else:
                out.append(_target(job.rec))
        for job_id, job in live.items():  # tasks split off during this pass
            if not any(row[0] == job_id for row in rows) and not job.is_array_remainder:
                out.append(_target(job.rec))
        return out

    def task(self, array_job_id: int, index: int) -> deps.Target | None:
        for job in self.live_arrays.get(array_job_id, []):
            if job.is_array_remainder:
                if index in (job.pending_indices or []):
                    return deps.Target("PENDING")
            elif job.rec.array_task_id == index:
                return _target(job.rec)
        for row in self._array_rows(array_job_id):
            if row[7] == index:
                live = self.ctl.jobs.get(row[0])
                return _target(live.rec) if live is not None else self._from_row(row)
        return None

    def singleton_blocked(self, name: str, user: str, job_id: int, seq: int) -> bool:
        for job in self.rivals.get((name, user), []):
            if job.job_id == job_id:
                continue
            if job.rec.state in ("RUNNING", "COMPLETING", "SUSPENDED"):
                return True
            if job.rec.state == "PENDING" and (job.seq, job.job_id) < (seq, job_id):
                return True
        return False
