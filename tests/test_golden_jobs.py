"""Jobs' lives under sflow against real SLURM 22.05's (compat/golden/jobs.json).

Every recorded case is played again through sflow's shims, each on a private
4-node cluster with the reference slurm.conf, all cases side by side; the
outputs go through the recorder's own normalisation and must match.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BIN, REF_CONF, ROOT, Cluster

sys.path.insert(0, os.path.join(ROOT, "compat"))
from record_jobs import WAIT_SECONDS, Outcome, Who, load_cases, play  # noqa: E402

from sflow.queue import client  # noqa: E402

GOLDEN = json.load(open(os.path.join(ROOT, "compat", "golden", "jobs.json")))
CASES = {case["name"]: case for case in load_cases()}
WORKERS = 8  # mostly waiting on jobs and controllers, not computing


def _cluster(base) -> Cluster:
    home, work = base / "home", base / "work"
    home.mkdir(parents=True)
    work.mkdir()
    env = {**os.environ, "SFLOW_HOME": str(home), "SFLOW_CONF": REF_CONF,
           "PATH": BIN + os.pathsep + os.environ.get("PATH", ""), "SFLOW_CONTROLLER_IDLE": "30"}
    for name in [n for n in env if n.startswith(("SLURM_", "SBATCH_", "SQUEUE_", "SACCT_", "SCANCEL_"))]:
        del env[name]
    return Cluster(str(home), str(work), env)


def _replay(case: dict, base) -> list[dict] | BaseException:
    cluster = _cluster(base)
    try:
        def run(argv: list[str], stdin: str | None) -> Outcome:
            done = cluster.run(*argv, input=stdin or "", timeout=60)
            return Outcome(done.stdout, done.stderr, done.returncode)

        def wait_ended(ids: list[str]) -> None:
            # The controller answers when they have ended: no polling through the shims.
            client.call(cluster.home, "wait", job_ids=[int(i) for i in ids], start=False, timeout=WAIT_SECONDS)

        return play(case, run, Who.current(cluster.work), wait_ended=wait_ended)
    except Exception as err:  # reported by the case's own test
        return err
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("jobs")
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {r["name"]: pool.submit(_replay, r["input"], base / r["name"]) for r in GOLDEN}
        return {name: future.result() for name, future in futures.items()}


def _param(record: dict):
    reason = CASES.get(record["name"], {}).get("deviation")
    marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
    return pytest.param(record, id=record["name"], marks=marks)


@pytest.mark.parametrize("record", [_param(r) for r in GOLDEN])
def test_job_life_matches_slurm(record, replayed):
    ours = replayed[record["name"]]
    if isinstance(ours, BaseException):
        raise ours
    for step, (expected, got) in enumerate(zip(record["results"], ours)):
        assert got == expected, f"result {step}: {expected.get('run', 'files')}"
    assert len(ours) == len(record["results"])


def test_cases_are_recorded():
    """The golden file was recorded from the cases as they stand (a deviation needs no new recording)."""
    def plain(case: dict) -> dict:
        return {k: v for k, v in case.items() if k != "deviation"}

    assert GOLDEN and len({r["name"] for r in GOLDEN}) == len(GOLDEN)  # no case recorded twice
    assert {n: plain(c) for n, c in CASES.items()} == {r["name"]: plain(r["input"]) for r in GOLDEN}
