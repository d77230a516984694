"""Scripts, names, arguments, environment values and paths are bytes, as in SLURM.

A Latin-1 script with a Latin-1 job name, argument, environment value and
working directory runs as submitted, prints the bytes it printed, and the views
show the name's bytes; no command says "internal error".
"""

from __future__ import annotations

import os
import subprocess

from sflow.queue import store
from sflow.records import JobRecord, StepRecord
from sflow.slurm.model import JobRequest

NAME = b"caf\xe9\xff"
SCRIPT = (b"#!/bin/bash\n#SBATCH -J " + NAME + b"\n#SBATCH -o out-%j.bin\n"
          b"# \xe9t\xe9, \xff\xfe and a lone \x80\n"
          b"cat \"$0\" > ran.bin\n"
          b"printf '%s|%s|%s|\\xe9\\n' \"$1\" \"$X\" \"$SLURM_JOB_NAME\"\n")
EXPECTED = b"a\xe9|v\xff|" + NAME + b"|\xe9\n"


def _run(cluster, argv: list[bytes], cwd: bytes, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {os.fsencode(k): os.fsencode(v) for k, v in cluster.env.items()}
    env[b"X"] = b"v\xff"
    return subprocess.run(argv, cwd=cwd, env=env, input=stdin, capture_output=True, timeout=120)


def _clean(done: subprocess.CompletedProcess) -> bytes:
    assert b"internal error" not in done.stdout + done.stderr, done.stderr
    assert b"Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    return done.stdout


def _workdir(cluster) -> bytes:
    work = os.path.join(os.fsencode(cluster.work), b"d\xe9")
    os.mkdir(work)
    with open(os.path.join(work, b"job\xe9.sh"), "wb") as handle:
        handle.write(SCRIPT)
    return work


def test_latin1_script_by_file_runs_byte_exact(cluster):
    work = _workdir(cluster)
    job_id = int(_clean(_run(cluster, [b"sbatch", b"--parsable", b"--wait", b"job\xe9.sh", b"a\xe9"], work)))
    with open(os.path.join(work, b"out-%d.bin" % job_id), "rb") as handle:
        assert handle.read() == EXPECTED
    with open(os.path.join(work, b"ran.bin"), "rb") as handle:
        assert handle.read() == SCRIPT
    assert _clean(_run(cluster, [b"squeue", b"-h", b"-t", b"all", b"-o", b"%j|%Z|%o"], work)) == (
        NAME + b"|" + work + b"|" + os.path.join(work, b"job\xe9.sh") + b"\n")
    shown = _clean(_run(cluster, [b"scontrol", b"show", b"job", b"%d" % job_id], work))
    assert b"JobName=" + NAME + b"\n" in shown and b"WorkDir=" + work + b"\n" in shown
    # As SLURM's accounting database keeps it: UTF-8 only, "?" for every other byte.
    assert _clean(_run(cluster, [b"sacct", b"-n", b"-X", b"-P", b"-o", b"JobName,WorkDir"], work)) == (
        b"caf??|" + work.replace(b"\xe9", b"?") + b"\n")


def test_latin1_script_on_stdin_and_wrap_run_byte_exact(cluster):
    work = _workdir(cluster)
    job_id = int(_clean(_run(cluster, [b"sbatch", b"--parsable", b"--wait", b"-J", b"in\xe9"], work, SCRIPT)))
    with open(os.path.join(work, b"out-%d.bin" % job_id), "rb") as handle:
        assert handle.read() == b"|v\xff|in\xe9|\xe9\n"
    with open(os.path.join(work, b"ran.bin"), "rb") as handle:
        assert handle.read() == SCRIPT
    wrap = int(_clean(_run(cluster, [b"sbatch", b"--parsable", b"--wait", b"-o", b"w\xe9.bin",
                                     b"--wrap", b"printf '%s\\n' \xe9\xff \"$X\""], work)))
    with open(os.path.join(work, b"w\xe9.bin"), "rb") as handle:
        assert handle.read() == b"\xe9\xff\nv\xff\n"
    held = int(_clean(_run(cluster, [b"sbatch", b"--parsable", b"-H", b"-J", b"h\xfe", b"--wrap", b"true"], work)))
    assert _clean(_run(cluster, [b"squeue", b"-h", b"-j", b"%d" % held, b"-o", b"%j"], work)) == b"h\xfe\n"
    assert _clean(_run(cluster, [b"scontrol", b"update", b"JobId=%d" % held, b"JobName=u\xfd"], work)) == b""
    assert _clean(_run(cluster, [b"squeue", b"-h", b"-j", b"%d" % held, b"-o", b"%j"], work)) == b"u\xfd\n"
    assert _clean(_run(cluster, [b"scancel", b"-n", b"u\xfd"], work)) == b""
    assert wrap > job_id


def test_srun_carries_bytes(cluster):
    work = _workdir(cluster)
    out = _clean(_run(cluster, [b"srun", b"-J", b"s\xe9", b"sh", b"-c", b"printf '%s|%s|%s\\n' \"$1\" \"$X\" "
                                b"\"$SLURM_JOB_NAME\"; pwd", b"_", b"a\xff"], work))
    assert out == b"a\xff|v\xff|s\xe9\n" + work + b"\n"
    done = _run(cluster, [b"salloc", b"-J", b"l\xe9", b"sh", b"-c", b"printf '%s|%s\\n' \"$X\" \"$SLURM_JOB_NAME\"; "
                          b"srun printf '%s\\n' \xfe"], work)
    assert done.returncode == 0 and b"internal error" not in done.stderr, done.stderr
    assert done.stdout == b"v\xff|l\xe9\n\xfe\n"


def test_requests_with_any_bytes_survive_json():
    request = JobRequest(job_name="caf\udce9\udcff", script="echo \udce9\n", script_args=["\udc80"],
                         submit_dir="/d\udce9", work_dir="/d\udce9", environment={"X": "v\udcff"},
                         user="u", uid=1, gid=1, submit_host="h")
    text = request.to_json()
    assert text.isascii()
    assert JobRequest.from_json(text) == request
    # Requests stored before carried raw UTF-8 from pydantic's own encoder.
    plain = request.model_copy(update={"job_name": "caf\u00e9", "script": "x", "script_args": [],
                                       "submit_dir": "/", "work_dir": "/", "environment": {}})
    assert JobRequest.from_json(plain.model_dump_json()) == plain


def test_store_keeps_bytes_of_any_text(tmp_path):
    conn = store.open_db(str(tmp_path))
    job = JobRecord(job_id=7, name="caf\udce9", user="u", uid=1, gid=1, partition="debug", state="PENDING",
                    reason="None", submit_time=1.0, work_dir="/d\udce9", command="/d\udce9/s\udcff.sh",
                    stdout="/d\udce9/o", comment="ok \u00e9")
    store.insert_job(conn, job, status_path="/s\udce9")
    assert store.read_jobs(conn) == [job]
    rows = store.read_internal(conn, "job_id = 7", columns=("status_path",))
    assert rows == [(job, "/s\udce9")]
    # The columns hold the original bytes, for SQL and the sqlite3 shell.
    assert conn.execute("SELECT name, comment FROM jobs").fetchone() == (b"caf\xe9", "ok \u00e9")
    job.name = "n\udcfe"
    store.update_job(conn, job)
    assert store.read_jobs(conn)[0].name == "n\udcfe"
    step = StepRecord(job_id=7, step_id="0", name="x\udce9", state="COMPLETED", extra={"a": "\udce9"})
    store.save_step(conn, step)
    assert store.read_steps(conn) == [step]


def test_messages_about_missing_paths_name_their_bytes(cluster):
    work = os.fsencode(cluster.work)
    done = _run(cluster, [b"srun", b"nope\xe9"], work)
    assert b"internal error" not in done.stderr and done.returncode == 2
    assert b"error: execve(): nope\xe9: No such file or directory\n" in done.stderr
    _clean(_run(cluster, [b"sbatch", b"--wait", b"-D", work + b"/gone\xe9", b"-o", work + b"/gone.out",
                          b"--wrap", b"pwd"], work))
    with open(work + b"/gone.out", "rb") as handle:
        note = b"slurmstepd-node1: error: couldn't chdir to `" + work + b"/gone\xe9': No such file or directory: going to /tmp instead\n"
        assert handle.read() == 2 * note + b"/tmp\n"
