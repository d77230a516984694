"""``sstat``: the usage of running steps, from the samples their gatherers leave beside the job."""

from __future__ import annotations

import getopt

from sflow.exec.usage import format_kb
from sflow.records import StepRecord
from sflow.views.fmt import field_columns, load_table, render_columns, step_order
from sflow.views.step_usage import STEP_USAGE, usage_value

SHORT = "aehi:j:no:pPvV"
LONG = ["allsteps", "helpformat", "help", "pidformat", "jobs=", "noheader", "format=", "fields=", "parsable",
        "parsable2", "verbose", "version", "usage"]
USAGE = ("Usage: sstat [-a] [-e] [-h] [-i] [-j jobid[.stepid]] [-n] [-o field,...] [-p] [-P] [-v] [-V]\n")


def _tres(used: dict, key: str) -> str:
    if key == "node":
        node = used.get("max_rss_node", "")
        return f"cpu={node},energy={node},fs/disk={node},mem={node},pages={node},vmem={node}"
    rss, vm = (used.get("cur_rss"), used.get("cur_vmsize")) if key == "ave" else (used.get("max_rss"), used.get("max_vmsize"))
    cpu = usage_value("AveCPU", used)
    return f"cpu={cpu},energy=0,fs/disk=0,mem={format_kb(rss)},pages=0,vmem={format_kb(vm)}"


def value(name: str, step: StepRecord, used: dict) -> str:
    if name == "JobID":
        return f"{step.job_id}.{step.step_id}"
    if name == "NTasks":
        return str(step.num_tasks)
    if name in STEP_USAGE:
        return usage_value(name, used, step.num_tasks, live=True)
    if name.endswith("Node"):
        return used.get("max_rss_node", "")
    if name.endswith("Task"):
        return "0"
    if name.startswith("ReqCPUFreq"):
        return "0" if step.step_id == "batch" else "Unknown"
    if name in ("TRESUsageInAve", "TRESUsageInTot"):
        return _tres(used, "ave")
    if name in ("TRESUsageInMax", "TRESUsageInMin"):
        return _tres(used, "max")
    if name in ("TRESUsageInMaxNode", "TRESUsageInMinNode"):
        return _tres(used, "node")
    if name.startswith("TRESUsageIn"):
        return "cpu=0,fs/disk=0,mem=0,pages=0,vmem=0"
    if name.startswith("TRESUsageOut"):
        return "energy=0,fs/disk=0"
    return "0"  # pages, energy and disk: not measured


def sstat_main(argv: list[str], jobs: list, steps: list[StepRecord], live_usage) -> tuple[str, str, int]:
    """``live_usage(step)``: the step's last sample, or None. ``steps``: the running jobs' steps."""
    try:
        options, rest = getopt.gnu_getopt(argv, SHORT, LONG)
    except getopt.GetoptError as err:
        return "", f"sstat: {err}\nTry \"sstat --help\" for more information\n", 1
    table = load_table("sstat_fields.toml")
    fields_text = ",".join(row["name"] for row in table)
    all_steps, header = False, True
    delimiter, trailing = None, False
    specs: list[str] = []
    for option, raw in options:
        if option in ("-a", "--allsteps"):
            all_steps = True
        elif option in ("-n", "--noheader"):
            header = False
        elif option in ("-o", "--format", "--fields"):
            fields_text = raw
        elif option in ("-p", "--parsable"):
            delimiter, trailing = "|", True
        elif option in ("-P", "--parsable2"):
            delimiter, trailing = "|", False
        elif option in ("-j", "--jobs"):
            specs += [s for s in raw.split(",") if s]
        elif option in ("-h", "--help", "--usage"):
            return USAGE, "", 0
        elif option in ("-e", "--helpformat"):
            return " ".join(row["name"] for row in table) + "\n", "", 0
        elif option in ("-V", "--version"):
            from sflow.slurm.help import VERSION_LINE  # deferred: it brings the option table (~0.3 ms) sstat never uses

            return VERSION_LINE + "\n", "", 0
    specs += [s for word in rest for s in word.split(",") if s]
    if not specs:
        return "", "sstat: error: You didn't give me any jobs to stat.\n", 1
    parsed = []
    for spec in specs:
        job_text, dot, step = spec.partition(".")
        if not job_text.isdecimal() or (dot and not (step.isdecimal() or step in ("batch", "extern"))):
            return "", f"sstat: fatal: Bad job/step specified: {spec}\n", 1
        parsed.append((int(job_text), step if dot else None))
    by_name = {row["name"].lower(): row for row in load_table("sacct_fields.toml")}
    by_name.update({row["name"].lower(): row for row in table})
    columns, unknown = field_columns(fields_text, by_name)
    if unknown is not None:
        return "", f"sstat: error: Invalid field requested: \"{unknown}\"\n", 1
    running = {j.job_id for j in jobs if j.state in ("RUNNING", "COMPLETING")}
    rows, errors = [], []
    for job_id, step_id in parsed:
        if job_id not in running:
            errors.append(f"sstat: error: couldn't get steps for job {job_id}\n" if not any(
                j.job_id == job_id for j in jobs) else f"sstat: error: No steps running for job {job_id}\n")
            continue
        live = [s for s in steps if s.job_id == job_id and s.state == "RUNNING"]
        if step_id is not None:
            live = [s for s in live if s.step_id == step_id]
            if not live:
                errors.append(f"sstat: error: StepId={job_id}.{step_id} not found running.\n")
                continue
        elif not all_steps:
            live = [s for s in live if s.step_id.isdecimal()]  # srun's steps; -a adds the batch step
        live.sort(key=step_order)
        for step in live:
            rows.append([value(name, step, live_usage(step) or {}) for name, _, _ in columns])
    table = render_columns(columns, rows, header=header, delimiter=delimiter, trailing=trailing, cut_header="+")
    return table, "".join(errors), 0
