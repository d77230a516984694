"""``flow``: submit and follow jobs, and inspect what sbatch would do.

Thin: every rule lives in the language, queue and backend layers; this only
turns their results into what a person reads.

Each subcommand imports what it needs when it runs, as the shims import their
command's module: with all of them at the top (pydantic, httpx, asyncssh, the
emulator) every ``flow`` call would start in ~550 ms instead of ~25 ms.
"""

from __future__ import annotations

import json
import os
import sys

import click

from sflow.errors import SflowError, render


def _fail(command: str, err: SflowError) -> None:
    click.echo(render(command, err), err=True)
    sys.exit(getattr(err, "exit_code", 1))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sflow", prog_name="flow")
def cli() -> None:
    """sflow: run SLURM batch scripts unchanged, here or on Mithril."""


def _parse(sbatch_args: tuple[str, ...], backend: str | None):
    """The submission and the script text it was parsed from (which the submission then sends)."""
    from sflow.cli.submit_context import environment, identity, read_script
    from sflow.slurm.request import parse_sbatch

    env = environment()
    if backend:
        env["SFLOW_BACKEND"] = backend
    args = list(sbatch_args)
    cwd = os.getcwd()
    script = read_script(args, cwd)
    return parse_sbatch(args, env=env, cwd=cwd, script_text=script, **identity()), script


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--dry-run", is_flag=True, help="Print the job request instead of submitting it.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print it as JSON, for programs.")
@click.option("--backend", type=click.Choice(["local", "mithril"]), help="Where to run (default: $SFLOW_BACKEND or local).")
@click.option("-i", "--instance-type", metavar="TYPE",
              help="Mithril instance type: 8xh100, 2xa100, or a GPU type alone (h100: its largest instance).")
@click.argument("sbatch_args", nargs=-1, type=click.UNPROCESSED)
def run(dry_run: bool, as_json: bool, backend: str | None, instance_type: str | None,
        sbatch_args: tuple[str, ...]) -> None:
    """Submit a batch script, or a command, and follow it until it ends.

    \b
      flow run [OPTIONS] SCRIPT [ARGS]...      a batch script, as sbatch runs it
      flow run "COMMAND" [OPTIONS]             a command, as sbatch --wrap runs it
      flow run [OPTIONS] -- COMMAND [ARGS]...
    \b
      flow run "python train.py" -i 8xh100
      flow run -N 2 -t 10 --limit-price='$2.50/gpu-hr' job.slurm

    OPTIONS are sbatch's and the #SFLOW directives' (--limit-price, --instance-type/-i,
    --region, --spot, --reserved, --backend); the command line wins over SFLOW_* variables,
    which win over the script's directives. It prints why the job waits, streams its output
    and exits with the job's exit code. Ctrl-C asks whether to cancel the job (without a
    terminal it cancels it); answering no leaves it running, to follow with flow logs -f.
    """
    from sflow.cli.run_args import split_run_args

    try:
        split = split_run_args(list(sbatch_args))
    except SflowError as err:
        _fail("flow run", err)
    dry_run, as_json = dry_run or split.dry_run, as_json or split.as_json
    if instance_type is not None:  # given before any other option, click read it
        split.sflow_env.setdefault("SFLOW_INSTANCE_TYPE", instance_type)
    os.environ.update(split.sflow_env)  # the command line over SFLOW_* over #SFLOW directives
    sbatch_args = tuple(split.sbatch_args)
    try:
        submission, script = _parse(sbatch_args, backend)
    except SflowError as err:
        _fail("sbatch", err)
    if dry_run:  # a submission prints its warnings itself
        for warning in submission.warnings:
            click.echo(f"sbatch: warning: {warning}", err=True)
        plan = _mithril_plan(submission.request)
        if as_json:
            data = submission.request.model_dump(mode="json")
            if plan is not None:
                data["mithril_plan"] = plan.to_dict()
            click.echo(json.dumps(data, indent=2, sort_keys=True))
        else:
            from sflow.cli.describe import describe_request

            click.echo(describe_request(submission.request))
            if plan is not None:
                from sflow.mithril.translate import format_plan

                click.echo(format_plan(plan))
        return
    from sflow.cli.follow import submit_and_follow

    sys.exit(submit_and_follow(list(sbatch_args), script, backend=backend))


def _mithril_plan(request):
    """A Mithril job's plan against the market now (None for a local job); refusals end the command."""
    from sflow.backends import chosen_name, default_name
    from sflow.conf import load_cluster

    if chosen_name(request, load_cluster(), default_name()) != "mithril":
        return None
    from sflow.mithril.fetch import plan_now

    try:
        return plan_now(request)
    except SflowError as err:
        _fail("sbatch", err)


@cli.command()
@click.argument("job_ids", nargs=-1)
def status(job_ids: tuple[str, ...]) -> None:
    """Show your jobs (or the ones named) as squeue -t all does, and what Mithril jobs cost."""
    from sflow.cli.cmd_squeue import main as squeue

    argv = ["-t", "all"] + (["-j", ",".join(job_ids)] if job_ids else [])
    code = squeue(argv)
    from sflow.cli.common import home, reader
    from sflow.queue.store import read_bids
    from sflow.views.costs import cost_lines

    jobs = [j for j in reader().jobs(backend="mithril") if not job_ids or str(j.job_id) in job_ids]
    sys.stdout.write(cost_lines(jobs, {j.job_id: read_bids(home(), j.job_id) for j in jobs}))
    sys.exit(code)


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the job writes, until it ends.")
@click.argument("job_id", type=int)
def logs(follow: bool, job_id: int) -> None:
    """Print a job's output."""
    from sflow.cli.common import reader
    from sflow.cli.follow import Tail, follow as follow_job, output_paths

    job = reader().job(job_id)
    if job is None:
        click.echo(f"flow: no job {job_id}", err=True)
        sys.exit(1)
    if follow:
        sys.exit(follow_job(job_id))
    out, err = output_paths(job)
    Tail(out, sys.stdout.buffer).pump()
    if err != out:
        Tail(err, sys.stderr.buffer).pump()


@cli.command()
@click.argument("job_ids", nargs=-1, required=True)
def cancel(job_ids: tuple[str, ...]) -> None:
    """Cancel jobs (scancel's id forms work: 12, 12_3, 12_[1-4])."""
    from sflow.cli.cmd_scancel import main as scancel

    sys.exit(scancel(list(job_ids)))


@cli.command()
def stop() -> None:
    """Stop the controller, as scontrol shutdown does: running jobs keep running, and the next command's controller adopts them."""
    from sflow.cli.cmd_scontrol import stop_controller

    sys.exit(stop_controller([]))


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--node", "-n", "node", type=int, default=0, show_default=True, help="Which of the job's nodes (0 is the first).")
@click.argument("job_id", type=int)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(node: int, job_id: int, command: tuple[str, ...]) -> None:
    """A shell (or COMMAND) on a running job's node, as ubuntu with sflow's key and pinned host key.

    Put COMMAND after --: flow ssh 12 --node 1 -- nvidia-smi. A single word is
    shell text (flow ssh 12 -- 'nvidia-smi | head'); several are quoted each.
    A local job's nodes are this machine: COMMAND runs here, in the node's
    working root.
    """
    from sflow.cli.ssh import main as ssh_main

    words = list(command)
    if words and words[0] == "--":
        words = words[1:]
    try:
        sys.exit(ssh_main(job_id, node, words))
    except SflowError as err:
        _fail("flow ssh", err)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--backend", type=click.Choice(["local", "mithril"]), help="Where to allocate (default: $SFLOW_BACKEND or local).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def grab(backend: str | None, args: tuple[str, ...]) -> None:
    """Hold N nodes (of a GPU type: flow grab 2 h100) until Ctrl-C or scancel: ARGS are [salloc options] N [GPU] [-- COMMAND].

    GPU is a type (h100: at least one per node), a type and count per node
    (h100:8) or an instance type (8xh100). While held, reach the nodes with
    flow ssh JOB --node I, or run a step with SLURM_JOB_ID=JOB srun ...; with a
    COMMAND it runs here in the allocation and the nodes go when it ends.
    """
    from sflow.cli.grab import main as grab_main

    try:
        sys.exit(grab_main(list(args), backend))
    except SflowError as err:
        _fail("flow grab", err)


@cli.command()
@click.option("--api-url", help="Mithril API base URL to check the key against (default: $MITHRIL_API_URL or the real service).")
@click.option("--no-check", is_flag=True, help="Save the key without asking the API whether it works.")
def init(api_url: str | None, no_check: bool) -> None:
    """Save your Mithril API key in sflow's config file (mode 0600).

    The key is read from the terminal without echo, or from standard input when it
    is not a terminal (``flow init < keyfile``): never from the command line, where
    other users could see it in the process list.
    """
    from sflow.mithril.client import MithrilClient, config_path, save_api_key

    if sys.stdin.isatty():
        key = click.prompt("Mithril API key", hide_input=True).strip()
    else:
        key = sys.stdin.readline().strip()
    if not key:
        click.echo("flow: error: no API key given", err=True)
        sys.exit(1)
    try:
        if not no_check:
            with MithrilClient(api_key=key, base_url=api_url) as client:
                me = client.me()
            click.echo(f"flow: the key works (user {getattr(me, 'email', None) or getattr(me, 'fid', '?')})", err=True)
        path = config_path()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        save_api_key(path, key)
    except SflowError as err:
        _fail("flow", err)
    click.echo(f"flow: saved the key in {path} (readable by you only)", err=True)


@cli.command()
@click.option("--repair", is_flag=True, help="Rebuild a damaged store from its backup and what can still be read.")
def doctor(repair: bool) -> None:
    """Check the job store; with --repair, restore it (see docs/controller.md, "A damaged store")."""
    from sflow.cli.common import home
    from sflow.queue import doctor as checkup

    state_home = home()
    try:
        report = checkup.repair(state_home) if repair else checkup.inspect(state_home)
    except checkup.DoctorError as err:
        click.echo(f"flow doctor: error: {err}", err=True)
        sys.exit(1)
    for line in report.lines():
        click.echo(line)
    if report.problem is not None:
        click.echo("run 'flow doctor --repair' to rebuild it (the damaged file is kept)", err=True)
        sys.exit(1)


@cli.group()
def burst() -> None:
    """Grow a real SLURM cluster onto Mithril, with sflow as its power-saving programs (docs/burst.md)."""


def _burst_settings(config: str | None):
    from sflow.burst.settings import BurstError, load

    try:
        return load(config)
    except BurstError as err:
        click.echo(f"flow: error: {err}", err=True)
        sys.exit(1)


def _burst_records(config: str | None):
    """(groups, nodes) from the burst store, read only (a store not made yet: none)."""
    from sflow.burst import store

    settings = _burst_settings(config)
    if not os.path.exists(store.db_path(settings.state_dir)):
        return [], {}
    try:
        conn = store.connect(settings.state_dir)
        try:
            return store.groups(conn), store.nodes(conn)
        finally:
            conn.close()
    except Exception as err:  # sqlite3.Error, PermissionError: said in one line
        click.echo(f"flow: error: cannot read {store.db_path(settings.state_dir)}: {err}", err=True)
        sys.exit(1)


_BURST_CONFIG = click.option("--config", metavar="PATH",
                             help="burst.toml (default $SFLOW_BURST_CONFIG, else /etc/sflow/burst.toml).")


@burst.command("serve")
@_BURST_CONFIG
def burst_serve(config) -> None:
    """Run the burst service in the foreground (one per state directory; the programs start it otherwise)."""
    from sflow.burst import service

    sys.exit(service.main(["--config", config] if config else []))


@burst.command("status")
@_BURST_CONFIG
def burst_status(config) -> None:
    """The burst nodes: their state, the bid each belongs to, and why."""
    from sflow.burst import views

    groups, nodes = _burst_records(config)
    for line in views.status_lines(groups, nodes):
        click.echo(line)


@burst.command("costs")
@_BURST_CONFIG
@click.option("--by", type=click.Choice(["job", "user", "account"]), default="job", show_default=True,
              help="Sum the bids' costs by SLURM job, user or account.")
def burst_costs(config, by) -> None:
    """What the burst nodes' bids cost, as Mithril billed them."""
    from sflow.burst import views

    groups, _ = _burst_records(config)
    for line in views.cost_lines(groups, by):
        click.echo(line)


@burst.command("unit")
@click.option("--config", metavar="PATH", default="/etc/sflow/burst.toml", show_default=True,
              help="The burst.toml the service reads.")
@click.option("--user", default="slurm", show_default=True, help="SlurmUser: who runs the programs.")
def burst_unit(config, user) -> None:
    """Print a systemd unit that runs the burst service."""
    from sflow.burst import views

    click.echo(views.unit_text(os.path.abspath(config), user), nl=False)


@burst.command("config", context_settings={"max_content_width": 100})
@click.option("-p", "--partition", "partitions", multiple=True, required=True, metavar="NAME=TYPE[:COUNT]",
              help="A partition of COUNT nodes (default 4) of Mithril instance type TYPE: a name, an id or "
                   "a shorthand (8xh100; h100: its largest instance). Repeat for more partitions.")
@click.option("--region", "regions", multiple=True, metavar="[NAME=]REGION",
              help="Where the partition's instances run (default: the cheapest region now).")
@click.option("--limit-price", "prices", multiple=True, metavar="[NAME=]PRICE",
              help="The most a node may cost, as #SFLOW --limit-price takes it: '$16.00' per instance-hour, "
                   "'$2.00/gpu-hr' per GPU-hour (default: the price now with headroom, capped, as for jobs).")
@click.option("--prefix", "prefixes", multiple=True, metavar="[NAME=]PREFIX",
              help="Node names PREFIX-1, PREFIX-2... (default: mithril-NAME).")
@click.option("--resume-timeout", type=click.IntRange(min=1), metavar="SECONDS",
              help="ResumeTimeout: how long a node may take to come up (default 1800).")
@click.option("--suspend-time", type=click.IntRange(min=1), metavar="SECONDS",
              help="SuspendTime: how long a node stays idle before it is given back (default 600).")
@click.option("--suspend-timeout", type=click.IntRange(min=1), metavar="SECONDS",
              help="SuspendTimeout: how long giving a node back may take (default 300).")
@click.option("--key-file", metavar="PATH",
              help="The file holding [mithril] api_key that the service reads (default: sflow's config file).")
@click.option("-o", "--output", metavar="DIR",
              help="Write slurm.conf.burst, gres.conf.burst and burst.toml in DIR instead of printing them.")
def burst_config(partitions, regions, prices, prefixes, resume_timeout, suspend_time, suspend_timeout,
                 key_file, output) -> None:
    """Print the slurm.conf and gres.conf lines and the burst service's burst.toml, from the live catalog.

    \b
      flow burst config -p gpu=8xh100:8 --limit-price '$2.40/gpu-hr'
      flow burst config -p h100=8xh100:16 -p a100=8xa100:8 --region us-central1-a \\
          --limit-price h100='$2.40/gpu-hr' --limit-price a100='$12.00' --output /tmp/burst

    A [NAME=]VALUE option without NAME= is for every partition that has no value of its own.
    The Mithril API is asked as jobs ask it (MITHRIL_API_URL, MITHRIL_API_KEY or flow init's key).
    """
    from sflow.burst import config
    from sflow.mithril.client import DEFAULT_BASE_URL, MithrilClient, config_path
    from sflow.mithril.fetch import fetch_catalog, load_settings

    try:
        specs = config.with_options([config.parse_partition(p) for p in partitions], regions, prices, prefixes)
        settings = load_settings()
        with MithrilClient(base_url=settings.api_url) as client:
            catalog = fetch_catalog(client)
            api_url = client.base_url
        parts, warnings = config.resolve(specs, catalog, settings.plan)
    except SflowError as err:
        _fail("flow", err)
    timing = config.Timing(resume_timeout or config.RESUME_TIMEOUT, suspend_time or config.SUSPEND_TIME,
                           suspend_timeout or config.SUSPEND_TIMEOUT)
    service = config.Service(api_url or DEFAULT_BASE_URL, settings.project,
                             os.path.abspath(key_file or config_path()))
    files = {"slurm.conf.burst": config.slurm_conf(parts, timing, config.program_paths()),
             "gres.conf.burst": config.gres_conf(parts), "burst.toml": config.burst_toml(parts, service)}
    for warning in warnings:
        click.echo(f"flow: warning: {warning}", err=True)
    if output is None:
        click.echo("\n".join(f"# ---- {name} ----\n{text}" for name, text in files.items()), nl=False)
        return
    try:
        os.makedirs(output, exist_ok=True)
        for name, text in files.items():
            with open(os.path.join(output, name), "w", encoding="utf-8") as handle:
                handle.write(text)
    except OSError as err:
        click.echo(f"flow: error: cannot write {err.filename or output}: {err.strerror}", err=True)
        sys.exit(1)
    click.echo(f"flow: wrote {', '.join(os.path.join(output, name) for name in files)}", err=True)


@cli.command("mithril-emulator")
@click.option("--port", type=int, default=0, show_default=True, help="TCP port on loopback (0: any free port).")
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
def mithril_emulator(port: int, options: tuple[str, ...]) -> None:
    """Serve a local emulator of the Mithril API (auction, instances as loopback SSH hosts).

    It prints its base URL; point sflow at it with MITHRIL_API_URL. Other options
    (--tick, --fault-rate, --api-key, ...) are the emulator's: see --help after --.
    """
    from sflow.mithril.emulator import main as emulator_main

    sys.exit(emulator_main(["--port", str(port), *options]))


def main() -> None:
    try:
        cli(standalone_mode=True)
    except SflowError as err:
        _fail("flow", err)


if __name__ == "__main__":
    main()
