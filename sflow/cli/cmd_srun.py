"""``srun``: run a parallel step inside the current allocation (or a new one)."""

from __future__ import annotations

import os
import signal as _signal
import sys

from sflow.cli.common import home as state_home
from sflow.cli.submit_context import environment
from sflow.conf import load_cluster
from sflow.errors import SlurmError
from sflow.exec import steplog as step_log
from sflow.exec import usage
from sflow.exec.env import StepContext
from sflow.exec.srun import SRUN_FORWARDS, StepRequest, StepRunner, load_context, next_step_id, plan_step
from sflow.exec.terminal import window_size
from sflow.exec.verbose import check_distribution, check_gpu_bind
from sflow.slurm.display import defined_options
from sflow.slurm.getopt import getopt
from sflow.slurm.help import VERSION_LINE, render_help, render_usage
from sflow.slurm.options import table
from sflow.slurm.request import convert

# The geometry srun reads from its environment only when it makes its own allocation:
# inside a job these describe the job, and the step inherits the job's layout instead.
OUTSIDE_JOB_ENV = {"SLURM_NNODES": "nodes", "SLURM_NTASKS": "ntasks", "SLURM_NPROCS": "ntasks"}


def _settings(argv: list[str], env: dict[str, str], in_job: bool) -> tuple[list, list[str]]:
    """(option, raw) pairs from srun's environment, then its command line; and the program."""
    options = table("srun")
    found = []
    for name, option in options.env_map().items():
        if name not in env or option.status == "rejected":
            continue
        raw = env[name]
        if option.arg == "none":
            if option.long == "verbose":
                found += [(option, None)] * _count(raw)
            elif raw.strip().lower() not in ("0", "no", "false", ""):
                found.append((option, None))
            continue
        found.append((option, raw))
    if not in_job:
        for name, long in OUTSIDE_JOB_ENV.items():
            if name in env:
                found.append((options.by_long(long), env[name]))
    parsed = getopt("srun", argv)
    return found + parsed.options, parsed.positionals


def _count(raw: str) -> int:
    try:
        return max(0, int(raw))
    except ValueError:
        return 0


def _request(argv: list[str], env: dict[str, str] | None = None, in_job: bool = True):
    env = dict(os.environ) if env is None else env
    options, positionals = _settings(argv, env, in_job)
    req = StepRequest(argv=positionals)
    warnings = []
    for option, raw in options:
        name = option.field
        if option.long == "gpu-bind":
            check_gpu_bind(raw)
            req.gpu_bind = raw
        if option.status == "ignored":
            warnings.append(option.note)
            continue
        if option.long == "acctg-freq":
            req.acctg_freq = raw
            continue
        req.given.append((option.long, raw))
        value = convert(option, raw)
        if name == "nodes":
            req.nodes = value[0]
        elif name in ("ntasks", "ntasks_per_node", "cpus_per_task", "overcommit", "label", "output",
                      "error", "input", "chdir", "job_name", "preserve_env", "multi_prog", "test_only",
                      "exclusive", "debugger_test", "pty"):
            setattr(req, name, value)
        elif name == "gpus_per_task":
            req.gpus_per_task = value.count
        elif name == "jobid":
            if not raw.strip().isdecimal():
                raise SlurmError(f'Invalid numeric value "{raw}" for --jobid.')
            req.jobid = raw.strip()
        elif name == "nodelist":
            req.nodelist = value
        elif name == "kill_on_bad_exit":
            req.kill_on_bad_exit = raw is None or _seconds("kill-on-bad-exit", raw) != 0  # non-zero kills
        elif name == "verbose":
            req.verbose += 1
        elif name == "quiet":
            req.quiet = True
        elif name == "wait":
            req.wait = _seconds("wait", raw)
        elif name == "immediate":
            req.immediate = 1 if raw is None else _seconds("immediate", raw)
        elif name == "distribution":
            req.distribution, req.plane_size = check_distribution(raw, env.get("SLURM_DIST_PLANESIZE"))
        elif name in ("help", "usage"):
            print(render_help("srun") if name == "help" else render_usage("srun"))
            raise SystemExit(0)
        elif name == "version":
            print(VERSION_LINE)
            raise SystemExit(0)
    if req.verbose and req.quiet:
        raise SlurmError("don't specify both --verbose (-v) and --quiet (-Q)")
    if req.pty and (req.input or req.output or req.error):
        raise SlurmError("--error/--input/--output are incompatible with --pty")
    return req, warnings, options


def _check_terminal(req) -> None:
    """--pty needs srun's output to be a terminal, to size the task's; else, as SLURM, run without one."""
    try:
        window_size(1)
    except OSError as exc:
        print(f"srun: error: ioctl(TIOCGWINSZ): {exc.strerror}\n"
              "srun: error: Not using a pseudo-terminal, disregarding --pty option", file=sys.stderr)
        req.pty = False


def _seconds(long: str, raw: str) -> int:
    text = (raw or "").strip()
    if not text.isdecimal():
        raise SlurmError(f'Invalid numeric value "{raw}" for --{long}.')
    return int(text)


def main(argv: list[str]) -> int:
    in_job = bool(os.environ.get("SLURM_JOB_ID")) or any(a.startswith("--jobid") for a in argv)
    req, warnings, options = _request(argv, in_job=in_job)
    for warning in warnings:
        print(f"srun: warning: {warning}", file=sys.stderr)
    if not req.argv:
        print("srun: fatal: No command given to execute.", file=sys.stderr)
        return 1
    if req.pty:
        _check_terminal(req)
    if req.multi_prog:
        from sflow.exec.multiprog import read_config  # deferred: ~0.6 ms at every srun's start

        req.programs = read_config(req.argv[0])
    if req.verbose:
        sys.stderr.write(defined_options(req.given, req.verbose))
    job_id = req.jobid or os.environ.get("SLURM_JOB_ID")
    home = state_home()
    job = load_context(home, job_id) if job_id else None
    if job is None and req.jobid:
        print(f"srun: error: Unable to confirm allocation for job {job_id}: Invalid job id specified\n"
              f"srun: Check SLURM_JOB_ID environment variable. Expired or invalid job {job_id}", file=sys.stderr)
        return 1
    if job is None and os.environ.get("SFLOW_NODES"):  # on a cloud node: never a new allocation from here
        raise SlurmError(f"Unable to confirm allocation for job {job_id}: no job context in {home}")
    if job is not None:
        return run_step(home, job, req)
    return _run_in_new_allocation(home, req, options)


def _run_in_new_allocation(home: str, req, options) -> int:
    """``srun`` outside a job: allocate, run the step there, release."""
    # deferred: ~0.4 ms (with render and users) that srun inside a job, the tight loop, never pays
    from sflow.cli.allocation import allocation_args, hold_allocation, release

    alloc_args = allocation_args(options)
    if req.test_only:
        alloc_args.append("--test-only")
    name = req.job_name or os.path.basename(req.argv[0])
    job_id, context = hold_allocation("srun", alloc_args, name, immediate=req.immediate)
    if req.verbose:
        print(f"srun: jobid {job_id}: nodes({len(context.nodes)}):`{context.nodelist}', cpu counts: "
              f"{_cpu_counts([n.cpus for n in context.nodes])}", file=sys.stderr)
    os.environ["SLURM_JOB_ID"] = str(job_id)
    code = 1
    try:
        code = run_step(home, context, req, new_allocation=True)
    finally:
        release(job_id, code)
    return code


def _cpu_counts(counts: list[int]) -> str:
    """``2(x3),1(x1)``: srun -v gives every run its repeat count, even of one."""
    runs: list[list[int]] = []
    for count in counts:
        if runs and runs[-1][0] == count:
            runs[-1][1] += 1
        else:
            runs.append([count, 1])
    return ",".join(f"{count}(x{times})" for count, times in runs)


def run_step(home: str, job, req, new_allocation: bool = False) -> int:
    def warn(text: str) -> None:
        print(f"srun: Warning: {text}", file=sys.stderr)

    if new_allocation and req.ntasks is None and req.cpus_per_task and not req.ntasks_per_node:
        # A new allocation without -n runs as many tasks as its CPUs hold (-c each).
        req.ntasks = max(1, sum(n.cpus for n in job.nodes) // req.cpus_per_task)
    indices, layout = plan_step(job, req, None, warn)
    if req.programs is not None:
        from sflow.exec.multiprog import check_covered  # deferred: as read_config in main()

        check_covered(req.programs, sum(layout))
    step_id = next_step_id(home, job.job_id)
    step = StepContext(step_id=step_id, nodes=[job.nodes[i] for i in indices], tasks_per_node=layout,
                       cpus_per_task=req.cpus_per_task or job.cpus_per_task,
                       gpus_per_task=req.gpus_per_task, launcher_port=40000 + os.getpid() % 20000,
                       distribution=req.distribution or "block", plane_size=req.plane_size,
                       given_distribution=req.distribution is not None, pty_size=_pty_size(req))
    step_log.started(home, job.job_id, step, name=req.job_name or os.path.basename(req.argv[0]), given=req.given)
    base_env = environment()
    if req.preserve_env:  # -E: the tasks keep the job's SLURM_NNODES and SLURM_NTASKS
        step.preserved = {k: base_env[k] for k in ("SLURM_NNODES", "SLURM_NTASKS", "SLURM_NPROCS") if k in base_env}
    runner = StepRunner(job, step, req, base_env)
    runner.cancelled_by = lambda: step_log.cancelled(home, job.job_id, step_id)
    runner.kill_wait, conf_freq = _step_config()
    runner.acctg_freq = usage.frequency(req.acctg_freq or conf_freq)
    runner.usage_path = usage.usage_path(home, job.job_id, step_id)
    previous = {s: _signal.signal(s, lambda signum, frame: runner.signal(signum)) for s in SRUN_FORWARDS}
    if req.pty:
        previous[_signal.SIGWINCH] = _signal.signal(_signal.SIGWINCH, lambda signum, frame: runner.resize())
    # The tasks' ends and srun's signals wake the wait alike, whichever thread the kernel gave them to.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous_wakeup = _signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    previous[_signal.SIGCHLD] = _signal.signal(_signal.SIGCHLD, lambda signum, frame: None)
    runner.wake = wake_r
    try:
        try:
            runner.start()
        except SlurmError:  # nothing started (a stdin file that does not open): the step ends here
            step_log.finished(home, job.job_id, step_id, runner.tasks)
            raise
        code = runner.wait()
    finally:
        runner.close_terminal()  # srun's terminal is given back on every way out
        for signum, handler in previous.items():
            _signal.signal(signum, handler)
        _signal.set_wakeup_fd(previous_wakeup)
        os.close(wake_r)
        os.close(wake_w)
    step_log.finished(home, job.job_id, step_id, runner.tasks, usage=runner.gauge.to_dict())
    return code


def _pty_size(req) -> tuple[int, int] | None:
    if not req.pty:
        return None
    try:
        return window_size(1)
    except OSError:
        return None


def _step_config() -> tuple[int, str | None]:
    """KillWait and JobAcctGatherFrequency of the cluster."""
    try:
        cluster = load_cluster()
    except Exception:  # no readable configuration: SLURM's defaults
        return 30, None
    return cluster.kill_wait, cluster.config_value("JobAcctGatherFrequency")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

__all__ = ["main", "SlurmError"]
