"""The native client: a command run by the controller says exactly what its Python shim says."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, load_native
from polling import wait_for
from sflow.cli import served
from sflow.queue import client

native = load_native()

pytestmark = pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler")

# The Python shim itself: the installed sbatch, squeue... may be the native client.
SHIM = [sys.executable, "-m", "sflow.cli.shims"]


def _b64(data) -> str:
    return base64.b64encode(data if isinstance(data, bytes) else os.fsencode(data)).decode()


def _run_message(cluster, command: str, *argv: str) -> dict:
    env = [_b64(f"{k}={v}") for k, v in cluster.env.items()]
    return client.call(cluster.home, "run", wire=served.WIRE, command=command, argv=[_b64(a) for a in argv], env=env,
                       cwd=_b64(cluster.work), tty=[False, False, False])


def _both(cluster, native_commands, *argv, input=None):
    shim = subprocess.run([*SHIM, *argv], cwd=cluster.work, env=cluster.env, input=input, capture_output=True)
    fast = subprocess.run([os.path.join(native_commands, argv[0]), *argv[1:]], cwd=cluster.work, env=cluster.env,
                          input=input, capture_output=True)
    return shim, fast


def test_commands_answer_the_same_through_the_controller(cluster, native_commands):
    assert cluster.run("sbatch", "--hold", "-J", "first", "--wrap", "true").returncode == 0  # starts the controller
    for argv in (["squeue"], ["squeue", "-o", "%i %j %T"], ["sacct", "-o", "JobID,JobName,State"],
                 ["sinfo"], ["scontrol", "show", "job"], ["squeue", "--bogus"], ["sbatch", "--bogus"],
                 ["scancel", "nope"], ["scontrol", "hold", "99"], ["squeue", "-n", b"caf\xe9".decode(
                     "utf-8", "surrogateescape")]):
        shim, fast = _both(cluster, native_commands, *argv)
        assert (fast.returncode, fast.stdout, fast.stderr) == (shim.returncode, shim.stdout, shim.stderr), argv


def test_a_command_run_in_the_controller_sees_the_clients_environment_only(cluster, native_commands, tmp_path):
    cluster.run("sbatch", "--hold", "-J", "envjob", "--wrap", "true")
    other_conf = tmp_path / "other.conf"
    other_conf.write_text("ClusterName=other\nNodeName=far[1-2] CPUs=2 RealMemory=1000\n"
                          "PartitionName=elsewhere Nodes=far[1-2] Default=YES\n")
    for argv, env in ((["squeue"], {"SQUEUE_FORMAT": "%i %j"}), (["squeue"], {}),
                      (["sacct", "-X", "-o", "JobID,Submit"], {"TZ": "Asia/Kolkata"}),
                      (["sacct", "-X", "-o", "JobID,Submit"], {}),
                      (["sinfo"], {"SFLOW_CONF": str(other_conf)}), (["sinfo"], {})):
        shim = subprocess.run([*SHIM, *argv], cwd=cluster.work, env={**cluster.env, **env}, capture_output=True)
        fast = subprocess.run([os.path.join(native_commands, argv[0]), *argv[1:]], cwd=cluster.work,
                              env={**cluster.env, **env, "SFLOW_PYTHON": "/nonexistent"}, capture_output=True)
        assert (fast.returncode, fast.stdout, fast.stderr) == (shim.returncode, shim.stdout, shim.stderr), (argv, env)


def _job_id(text: str) -> int:
    return int(text.split()[-1])


def test_sbatch_and_scancel_act_through_the_controller(cluster, native_commands):
    first = _job_id(cluster.run("sbatch", "--hold", "--wrap", "true").stdout)
    done = subprocess.run([os.path.join(native_commands, "sbatch"), "--hold", "-J", "nat", "--wrap", "true"],
                          cwd=cluster.work, env=cluster.env, capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"Submitted batch job {first + 1}\n", "")
    piped = subprocess.run([os.path.join(native_commands, "sbatch"), "--hold", "-J", "piped"], cwd=cluster.work,
                           env=cluster.env, input="#!/bin/sh\ntrue\n", capture_output=True, text=True)
    assert (piped.returncode, piped.stdout) == (0, f"Submitted batch job {first + 2}\n")
    subprocess.run([os.path.join(native_commands, "scancel"), str(first + 1)], env=cluster.env, check=True)
    listing = cluster.run("squeue", "-h", "-o", "%i %j").stdout
    assert listing.split("\n")[:2] == [f"{first + 2} piped", f"{first} wrap"]


def test_what_waits_is_left_to_the_shim(cluster):
    cluster.run("sbatch", "--hold", "--wrap", "true")
    assert _run_message(cluster, "squeue", "-i", "5").get("shim")
    assert _run_message(cluster, "srun", "true").get("shim")
    assert _run_message(cluster, "sbatch", "--hold").get("need_stdin")  # its script comes on stdin


def _without_job_ids(done) -> tuple:
    return done.returncode, re.sub(rb"\d+", b"N", done.stdout), done.stderr


def test_sbatch_wait_runs_in_the_controller_and_ends_as_the_shim(cluster, native_commands):
    cluster.run("sbatch", "--hold", "--wrap", "true")  # starts the controller
    # No Python to fall back to: the native side is answered by the controller or fails.
    no_shim = {**cluster.env, "SFLOW_PYTHON": "/nonexistent"}
    for argv, env, code in ((["--wrap", "true"], {}, 0), (["--wrap", "exit 3"], {}, 3),
                            (["--array=0-3", "--wrap", "exit $((SLURM_ARRAY_TASK_ID == 2 ? 5 : 0))"], {}, 5),
                            (["--parsable", "--wrap", "exit 2"], {"SBATCH_WAIT": "1"}, 2)):
        argv = ["sbatch", "-o", "/dev/null", *argv] + ([] if env else ["--wait"])
        shim = subprocess.run([*SHIM, *argv], cwd=cluster.work, env={**cluster.env, **env}, capture_output=True)
        fast = subprocess.run([os.path.join(native_commands, "sbatch"), *argv[1:]], cwd=cluster.work,
                              env={**no_shim, **env}, capture_output=True)
        assert _without_job_ids(fast) == _without_job_ids(shim), argv
        assert fast.returncode == code


def _started(cluster, name: str) -> bool:
    return cluster.run("squeue", "-h", "-n", name, "-t", "R", "-o", "%i").stdout.strip() != ""


def test_sbatch_wait_for_a_cancelled_job_ends_as_the_shim(cluster, native_commands):
    cluster.run("sbatch", "--hold", "--wrap", "true")
    ends = []
    for side, argv0 in (("shim", SHIM + ["sbatch"]), ("native", [os.path.join(native_commands, "sbatch")])):
        waiting = subprocess.Popen([*argv0, "--wait", "-o", "/dev/null", "-J", side, "--wrap", "sleep 60"],
                                   cwd=cluster.work, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert wait_for(lambda: _started(cluster, side))
        cluster.run("scancel", "-n", side)
        out, err = waiting.communicate(timeout=60)
        ends.append((waiting.returncode, re.sub(rb"\d+", b"N", out), err))
    assert ends[0] == ends[1] == (1, b"Submitted batch job N\n", b"")


def test_sbatch_wait_outlives_its_controller_and_never_submits_again(cluster, native_commands):
    cluster.run("sbatch", "--hold", "--wrap", "true")
    waiting = subprocess.Popen([os.path.join(native_commands, "sbatch"), "--wait", "-o", "/dev/null", "-J", "survivor",
                                "--wrap", "sleep 2; exit 4"], cwd=cluster.work, env=cluster.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_for(lambda: _started(cluster, "survivor"))
    with open(os.path.join(cluster.home, "ctl.pid")) as handle:
        os.kill(int(handle.read()), signal.SIGKILL)
    out, err = waiting.communicate(timeout=120)
    assert (waiting.returncode, err) == (4, b"")
    assert re.fullmatch(rb"Submitted batch job \d+\n", out)
    listed = cluster.run("sacct", "-X", "-n", "--name", "survivor", "-o", "JobID,State,ExitCode").stdout.split()
    assert listed == [out.split()[-1].decode(), "FAILED", "4:0"]


def test_sbatch_wait_interrupted_leaves_its_job_alone(cluster, native_commands):
    cluster.run("sbatch", "--hold", "--wrap", "true")
    waiting = subprocess.Popen([os.path.join(native_commands, "sbatch"), "--wait", "-o", "/dev/null", "-J", "left",
                                "--wrap", "sleep 1"], cwd=cluster.work, env=cluster.env, stdout=subprocess.PIPE)
    assert wait_for(lambda: _started(cluster, "left"))
    waiting.send_signal(signal.SIGINT)
    waiting.communicate(timeout=60)
    assert wait_for(lambda: cluster.run("sacct", "-X", "-n", "--name", "left", "-o", "State").stdout.split()
                    == ["COMPLETED"])


def test_a_peer_that_is_not_the_controllers_user_runs_the_shim():
    from sflow.cli.served import _why_not
    from sflow.queue.server import Conn

    class Ctl:
        home = "/nonexistent"

    other = Conn(None, uid=os.getuid() + 1, gid=os.getgid())
    assert "uid" in _why_not(Ctl(), other, "squeue", [], {"SFLOW_HOME": "/nonexistent"}, "/")
    mine = Conn(None, uid=os.getuid(), gid=os.getgid())
    assert _why_not(Ctl(), mine, "squeue", [], {"SFLOW_HOME": "/nonexistent"}, "/") is None
    assert _why_not(Ctl(), mine, "squeue", [], {"SFLOW_HOME": "/elsewhere"}, "/") == "another state directory"


def test_without_a_controller_the_client_runs_the_shim(cluster, native_commands):
    done = subprocess.run([os.path.join(native_commands, "sbatch"), "--hold", "--wrap", "true"], cwd=cluster.work,
                          env=cluster.env, capture_output=True, text=True)
    assert (done.returncode, done.stdout[:20]) == (0, "Submitted batch job ")  # the shim started the controller
    lost = subprocess.run([os.path.join(native_commands, "squeue")], env={**cluster.env, "SFLOW_PYTHON": "/nonexistent"},
                          capture_output=True, text=True)
    assert lost.returncode == 0 and "wrap" in lost.stdout  # answered by the controller, no Python needed


def test_a_socket_open_to_others_is_never_used(cluster, native_commands):
    cluster.run("sbatch", "--hold", "--wrap", "true")
    os.chmod(os.path.join(cluster.home, "ctl.sock"), 0o666)
    try:
        done = subprocess.run([os.path.join(native_commands, "squeue")], env={**cluster.env, "SFLOW_PYTHON": "/nonexistent"},
                              capture_output=True, text=True)
    finally:
        os.chmod(os.path.join(cluster.home, "ctl.sock"), 0o600)
    assert done.returncode == 1 and "cannot run sflow's Python command" in done.stderr


def test_python_shim_module_runs_a_command():
    done = subprocess.run([sys.executable, "-m", "sflow.cli.shims", "squeue", "--version"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert (done.returncode, done.stdout) == (0, "slurm-wlm 22.05.8\n")


def test_a_submission_resent_under_its_token_is_made_once_and_the_token_stays_out_of_the_job(cluster, native_commands):
    # What the shim does when the native client lost the controller's answer: the same token again.
    env = {**cluster.env, client.RESEND_TOKEN: "0123456789abcdef01234567"}
    argv = [*SHIM, "sbatch", "-o", "env.txt", "--wrap", "env"]
    first = subprocess.run(argv, cwd=cluster.work, env=env, capture_output=True, text=True)
    again = subprocess.run(argv, cwd=cluster.work, env=env, capture_output=True, text=True)
    assert first.returncode == 0 and again.stdout == first.stdout  # the same job, not a second
    native_run = subprocess.run([os.path.join(native_commands, "sbatch"), "-o", "native.txt", "--wrap", "env"],
                                cwd=cluster.work, env=cluster.env, capture_output=True, text=True)
    assert native_run.returncode == 0 and native_run.stdout != first.stdout
    cluster.run("scontrol", "wait_job", str(_job_id(native_run.stdout)))
    cluster.run("scontrol", "wait_job", str(_job_id(first.stdout)))
    for name in ("env.txt", "native.txt"):
        with open(os.path.join(cluster.work, name)) as handle:
            assert client.RESEND_TOKEN not in handle.read()


def test_without_a_controller_the_interpreter_beside_the_client_runs_the_shim(tmp_path):
    # A wheel built for one environment and installed into another (pip's cache) falls back to the
    # environment it is in, not the one it was built for.
    binary = native.compile_client(str(tmp_path / "squeue"), python="/nonexistent/python3")
    assert binary
    (tmp_path / "python3").write_text('#!/bin/sh\necho "beside: $*"\n')
    (tmp_path / "python3").chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run([binary, "-h"], env={"SFLOW_HOME": str(home), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "beside: -m sflow.cli.shims squeue -h\n")
