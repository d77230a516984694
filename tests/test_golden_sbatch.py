"""sflow's parser against sbatch 22.05's own answers (compat/golden/sbatch.json).

Every recorded case is replayed through ``parse_sbatch`` in the same layout the
recorder used; failures must carry SLURM's message and exit code, and
successes must describe the job as ``scontrol show job`` did.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from sflow.conf import load_file
from sflow.errors import SflowError, render
from sflow.slurm.display import format_dependency, format_memory_mb, requested_gpus, tres_per
from sflow.cli.submit_context import read_script
from sflow.slurm.request import parse_sbatch
from sflow.slurm.values import expand_output_pattern, format_timelimit_scontrol, compress_hostlist
from sflow.views.fmt import array_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = json.load(open(os.path.join(ROOT, "compat", "golden", "sbatch.json")))
# Integer option values at their edges (compat/record_counts.py), checked the same way.
COUNTS = json.load(open(os.path.join(ROOT, "compat", "golden", "counts.json")))
# Where sflow still answers otherwise: GPU counts SLURM keeps as text ("gres:gpu:abc"), the
# controller's own later checks and 16-bit fields, and scontrol's rounding of huge sizes.
COUNTS_DIFFER = set(json.load(open(os.path.join(ROOT, "tests", "counts_differ.json"))))
CLUSTER = load_file(os.path.join(ROOT, "compat", "golden", "ref-slurm.conf"))
JOB_ID = 4242
DEPS = {"{dep1}": "7001", "{dep2}": "7002"}
ARRAY_PENDING_TASK = 4294967294  # what scontrol shows for %a before a task runs


def _fill(text: str) -> str:
    for placeholder, value in DEPS.items():
        text = text.replace(placeholder, value)
    return text


def _replay(case: dict, tmp_path):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "in.txt").write_text("input\n")
    argv = ["--hold", *[_fill(a) for a in case.get("args", [])]]
    stdin = None
    script = case.get("script")
    if script is not None:
        if case.get("stdin"):
            stdin = _fill(script)
        else:
            with open(work / "job.sh", "w", newline="") as handle:
                handle.write(_fill(script))
            argv += ["job.sh", *case.get("script_args", [])]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "USER": "root", "LANG": "C", **case.get("env", {})}
    script_text = read_script(argv, str(work), stdin=lambda: stdin)  # sbatch reads it before it parses
    return str(work), parse_sbatch(argv, env=env, cwd=str(work), script_text=script_text, user="root", uid=0,
                                   gid=0, host="vm", cluster=CLUSTER)


def _expected(record: dict, cwd: str) -> dict:
    return {k: v.replace("{cwd}", cwd).replace("{job_id}", str(JOB_ID)).replace("{user}", "root")
            .replace("{dep1}", DEPS["{dep1}"]).replace("{dep2}", DEPS["{dep2}"]) for k, v in record["job"].items()}


def _shown(request, cwd: str) -> dict:
    """The scontrol fields sflow can know at submit time, in scontrol's words."""
    ctx = {"job_id": JOB_ID, "job_name": request.job_name, "user": "root"}
    if request.array:
        ctx.update(array_job_id=JOB_ID, array_task_id=ARRAY_PENDING_TASK)

    def path(pattern: str | None, default: str) -> str:
        if (pattern or "").lower() == "none":
            return "/dev/null"
        text = expand_output_pattern(pattern or default, ctx)
        return text if text.startswith("/") else os.path.join(request.work_dir, text)

    shown = {
        "JobName": request.job_name,
        "TimeLimit": format_timelimit_scontrol(request.time_limit),
        "NumTasks": str(request.ntasks),
        "NumCPUs": str(request.ntasks * request.cpus_per_task),
        "CPUs/Task": str(request.cpus_per_task),
        "WorkDir": request.work_dir,
        "StdIn": path(request.input, "/dev/null"),
        "StdOut": path(request.output, request.default_output),
        "StdErr": path(request.error or request.output, request.default_output),
        "Requeue": "0" if request.requeue is False else "1",
        "Nice": str(request.nice),
        "ReqNodeList": compress_hostlist(request.nodelist) if request.nodelist else "(null)",
        "ExcNodeList": compress_hostlist(request.exclude) if request.exclude else "(null)",
        "Dependency": format_dependency(request.dependency),
        "OverSubscribe": "NO" if request.exclusive else "OK",
        **tres_per(request),
    }
    if request.nodes_given:
        shown["NumNodes"] = (f"{request.min_nodes}-{request.max_nodes}" if request.max_nodes
                             else str(request.min_nodes))
    elif request.nodelist:
        shown["NumNodes"] = str(request.min_nodes)
    if request.mem_per_node_mb is not None:
        shown["MinMemoryNode"] = format_memory_mb(request.mem_per_node_mb)
    if request.mem_per_cpu_mb is not None:
        shown["MinMemoryCPU"] = format_memory_mb(request.mem_per_cpu_mb)
    shown["MinTmpDiskNode"] = format_memory_mb(request.tmp_mb) if request.tmp_mb else "0"
    if requested_gpus(request):
        shown["TRES"] = f"gres/gpu={requested_gpus(request)}"  # compared as the TRES line's end
    if request.array:
        shown["ArrayTaskId"] = array_text(request.array.text)
    if request.comment is not None:
        shown["Comment"] = request.comment
    if request.partition:
        shown["Partition"] = request.partition
    return shown


# scontrol shows padded specifiers and backslashed patterns unexpanded at
# submit time; the files a running job writes are checked by the exec goldens.
UNEXPANDED_AT_SUBMIT = re.compile(r"%\d|\\|%%")


@pytest.mark.parametrize("record", GOLDEN, ids=[r["name"] for r in GOLDEN])
def test_sbatch_matches_slurm(record, tmp_path):
    _check(record, tmp_path)


@pytest.mark.parametrize("record", [pytest.param(r, marks=pytest.mark.xfail(strict=True))
                                    if r["name"] in COUNTS_DIFFER else r for r in COUNTS],
                         ids=[r["name"] for r in COUNTS])
def test_integer_values_match_slurm(record, tmp_path):
    _check(record, tmp_path)


def _check(record: dict, tmp_path) -> None:
    case = record["input"]
    if record["exit_code"] != 0:
        with pytest.raises(SflowError) as caught:
            _replay(case, tmp_path)
        err = caught.value
        assert err.exit_code == record["exit_code"]
        text = render("sbatch", err)
        # sflow names the directive's line; SLURM does not. The rest is SLURM's, verbatim.
        text = re.sub(r" \((?:[^()]*) line \d+\)", "", text)
        assert text == record["stderr"].rstrip("\n")
        return
    cwd, submission = _replay(case, tmp_path)
    if "defined options" in record["stderr"]:  # -v / SBATCH_DEBUG
        assert submission.listing == record["stderr"].replace("{cwd}", cwd)
    expected = _expected(record, cwd) if record["job"] else None
    if expected is None:  # --quiet: nothing to compare but success
        return
    shown = _shown(submission.request, cwd)
    for key, value in shown.items():
        if key in ("StdOut", "StdErr") and UNEXPANDED_AT_SUBMIT.search(expected.get(key, "")):
            continue
        if key == "TRES":
            assert expected["TRES"].endswith("," + value), key
            continue
        assert value == expected.get(key, "(absent)"), key
    # Every TRES request scontrol showed is one sflow shows.
    assert {k for k in expected if k.startswith(("Tres", "CpusPerTres", "MemPerTres"))} <= set(shown)
