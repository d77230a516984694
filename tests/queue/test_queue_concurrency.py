"""Many submitters at once, racing controller starts, idle exit, the wire protocol's edges."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from queue_harness import queue  # noqa: F401  (the fixture)

from sflow.cli.render import submission
from sflow.queue import client, paths

PROCESSES = int(os.environ.get("SFLOW_TEST_SUBMITTERS", "16"))
PER_PROCESS = int(os.environ.get("SFLOW_TEST_SUBMISSIONS", "100"))

SUBMITTER = """
import os, sys
from sflow.queue import client
ids = []
for i in range(int(sys.argv[1])):
    reply = client.call(None, "submit", argv=["--hold", "-J", f"c{i}", "--wrap", "true"], env={}, cwd="/tmp",
                        stdin=None, user="u", uid=os.getuid(), gid=os.getgid(), host="h")
    assert reply["ok"], reply
    ids.append(reply["job_id"])
print(" ".join(map(str, ids)))
"""


def test_concurrent_submissions_get_distinct_ids_and_none_is_lost(queue):
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", SUBMITTER, str(PER_PROCESS)], env=queue.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(PROCESSES)]
    ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ids += [int(x) for x in out.split()]
    elapsed = time.monotonic() - start
    total = PROCESSES * PER_PROCESS
    assert len(ids) == total and len(set(ids)) == total
    assert sorted(ids) == list(range(100, 100 + total))
    assert sorted(j.job_id for j in queue.jobs()) == sorted(ids)
    assert elapsed < 60, f"{total} submissions took {elapsed:.1f} s"


def test_racing_starters_make_one_controller(queue):
    code = ("import sys; from sflow.queue import client; "
            "print(client.call(None, 'ping')['pid'])")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=queue.env, stdout=subprocess.PIPE, text=True)
             for _ in range(8)]
    pids = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert len(pids) == 1 and pids != {""}


def test_idle_controller_leaves_and_comes_back(queue, monkeypatch):
    monkeypatch.setenv("SFLOW_CONTROLLER_IDLE", "0.5")
    first = client.call(queue.home, "ping")["pid"]
    queue.wait_for(lambda: not os.path.exists(f"/proc/{first}") or open(f"/proc/{first}/stat").read().split()[2] == "Z",
                   timeout=15, what="idle exit")
    assert not os.path.exists(paths.socket_path(queue.home))
    second = client.call(queue.home, "ping")["pid"]
    assert second != first


def test_busy_controller_stays_and_held_jobs_do_not_keep_it(queue, monkeypatch):
    monkeypatch.setenv("SFLOW_CONTROLLER_IDLE", "0.3")
    job_id = queue.sbatch("--wrap", "sleep 1.5")
    pid = client.call(queue.home, "ping")["pid"]
    time.sleep(1)
    assert client.call(queue.home, "ping")["pid"] == pid  # a job runs: it stays
    queue.wait_done(job_id)
    queue.sbatch("--hold", "--wrap", "true")
    queue.wait_for(lambda: not os.path.exists(paths.socket_path(queue.home)), timeout=10,
                   what="exit with only a held job left")
    assert queue.jobs()[-1].state == "PENDING"


def test_protocol_edges(queue):
    client.call(queue.home, "ping")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(paths.socket_path(queue.home))
    sock.sendall(b'not json\n{"op": "nosuch"}\n{"op": "ping"}\n')
    data = b""
    while data.count(b"\n") < 3:
        data += sock.recv(65536)
    sock.close()
    bad, unknown, ping = [json.loads(line) for line in data.splitlines()]
    assert (bad["ok"], unknown["ok"], ping["ok"]) == (False, False, True)
    assert unknown["stderr"] == "sflow: error: unknown request 'nosuch'\n"
    assert oct(os.stat(paths.socket_path(queue.home)).st_mode & 0o777) == "0o600"


def test_resent_submission_is_queued_once(queue):
    args = dict(argv=["--hold", "--wrap", "true"], env={}, cwd="/tmp", script=None, user="u", uid=os.getuid(),
                gid=os.getgid(), host="h", token="fixed-token")
    first = client.call(queue.home, "submit", **args)
    again = client.call(queue.home, "submit", **args)
    assert first["job_id"] == again["job_id"]
    assert submission(again)["stdout"] == f"Submitted batch job {first['job_id']}\n"
    assert len(queue.jobs()) == 1


def test_shutdown_leaves_running_jobs_alone(queue):
    job_id = queue.sbatch("--wrap", "sleep 1; exit 3")
    queue.wait_state(job_id, "RUNNING")
    assert client.call(queue.home, "shutdown")["ok"]
    queue.wait_for(lambda: not os.path.exists(paths.socket_path(queue.home)), what="shutdown")
    assert queue.job(job_id).state == "RUNNING"
    assert queue.wait_done(job_id)["exit_code"] == 3
