"""flow run: its warnings, the #SFLOW options on its command line, and a command instead of a script."""

from __future__ import annotations

import json
import os

from sflow.cli.run_args import split_run_args

SCRIPT = "#!/bin/bash\n#SBATCH --mail-type=BEGIN\n#SBATCH --profile=task\necho hi\n"


def _script(cluster, text: str = SCRIPT, name: str = "job.sh") -> str:
    path = os.path.join(cluster.work, name)
    with open(path, "w") as handle:
        handle.write(text)
    return path


def test_each_ignored_option_warns_once_however_many_places_set_it(cluster):
    path = _script(cluster)
    env_and_line = ["env", "SBATCH_PROFILE=energy", "flow", "run"]
    for argv in ([*env_and_line, "--dry-run", "--mail-type=END", path], [*env_and_line, "--mail-type=END", path]):
        done = cluster.run(*argv)
        assert done.returncode == 0, done.stderr
        warnings = [line for line in done.stderr.splitlines() if "warning" in line]
        assert warnings == ["sbatch: warning: --mail-type is accepted and ignored: sflow sends no mail",
                            "sbatch: warning: --profile is accepted and ignored: it has no effect on an sflow cluster"]


def _cloud(cluster, *argv: str, env: dict | None = None) -> dict:
    done = cluster.run("env", *[f"{k}={v}" for k, v in (env or {}).items()], "flow", "run", "--dry-run", "--json", *argv)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["cloud"]


def test_sflow_options_on_the_command_line_win_over_the_environment_and_the_directives(cluster):
    path = _script(cluster, "#!/bin/bash\n#SFLOW --limit-price=$1.00\n#SFLOW --instance-type=1xa100\n"
                            "#SFLOW --region=eu-central1-a\necho hi\n")
    assert _cloud(cluster, path)["limit_price"] == "$1.00"
    assert _cloud(cluster, path, env={"SFLOW_LIMIT_PRICE": "$3"})["limit_price"] == "$3"
    given = _cloud(cluster, "-t", "10", "--limit-price=$2.50/gpu-hr", "--instance-type", "8xh100", path,
                   env={"SFLOW_LIMIT_PRICE": "$3", "SFLOW_INSTANCE_TYPE": "4xa100"})
    assert given == {**given, "limit_price": "$2.50/gpu-hr", "instance_type": "8xh100", "region": "eu-central1-a"}
    assert _cloud(cluster, "-J", "x", "-i", "h100", "--region", "us-central1-a", path)["instance_type"] == "h100"


def test_split_keeps_sbatch_options_and_their_values_and_takes_the_sflow_ones():
    split = split_run_args(["-t", "10", "--limit-price", "$2", "-J", "-i", "-N2", "--spot", "--time", "5",
                            "-i8xh100", "--inst=2xa100", "job.slurm", "-i", "arg"])
    assert split.sbatch_args == ["-t10", "-J-i", "-N2", "--time=5", "job.slurm", "-i", "arg"]
    assert split.sflow_env == {"SFLOW_LIMIT_PRICE": "$2", "SFLOW_SPOT": "1", "SFLOW_INSTANCE_TYPE": "2xa100"}


def test_a_command_instead_of_a_script(cluster):
    assert split_run_args(["python train.py", "-i", "8xh100"]).sbatch_args == ["--wrap=python train.py"]
    assert split_run_args(["-N1", "--", "echo", "a b"]).sbatch_args == ["-N1", "--wrap=echo 'a b'"]
    piped = cluster.run("flow", "run", "-t", "5", "--job-name", "piped", input="#!/bin/bash\necho piped\n")
    assert (piped.returncode, piped.stdout) == (0, "piped\n"), piped.stderr
    done = cluster.run("flow", "run", "echo hello world; exit 3", "-t", "5")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "hello world\n"
    done = cluster.run("flow", "run", "-t", "5", "--", "sh", "-c", 'echo "$0 $1"', "a b", "c")
    assert (done.returncode, done.stdout) == (0, "a b c\n"), done.stderr
    extra = cluster.run("flow", "run", "echo hi", "more")
    assert extra.returncode == 255 and "quote the whole command" in extra.stderr


def test_help_shows_both_forms_an_example_and_what_ctrl_c_does(cluster):
    text = cluster.run("flow", "run", "--help").stdout
    assert 'flow run "python train.py" -i 8xh100' in text
    assert "SCRIPT" in text and "-- COMMAND" in text and "Ctrl-C" in text


def test_instance_type_shorthands():
    from sflow.mithril.catalog import Catalog, InstanceType

    catalog = Catalog(instance_types=(InstanceType("it_h", "h100.80gb.sxm", 8, "h100", 224, 1800, 80),
                                      InstanceType("it_a1", "1xa100", 1, "a100", 16, 120, 80),
                                      InstanceType("it_a4", "4xa100", 4, "a100", 64, 500, 80)))
    named = {text: (catalog.instance_type(text) or InstanceType("-", "-", 0, None, 0, 0)).name
             for text in ("8xh100", "8 x H100", "h100", "a100", "1xa100", "4*a100", "2xa100", "it_a1", "v100")}
    assert named == {"8xh100": "h100.80gb.sxm", "8 x H100": "h100.80gb.sxm", "h100": "h100.80gb.sxm",
                     "a100": "4xa100", "1xa100": "1xa100", "4*a100": "4xa100", "2xa100": "-", "it_a1": "1xa100",
                     "v100": "-"}
