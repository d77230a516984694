"""burst.toml: where it is found, the boot command, the startup script, SLURM's commands without PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from .burst_harness import FakeBooter, FakeSlurm, KEY, emulator, market_bids, running, settings_for, wait_for
from .test_programs import held, requests, site  # noqa: F401 (fixtures)
from sflow.burst import settings as burst_settings
from sflow.burst import store
from sflow.burst.booter import SshBooter
from sflow.burst.service import mithril_settings
from sflow.burst.settings import BurstError, boot_command, config_path, load, parse, read_startup_script
from sflow.burst.slurm import Slurm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(ROOT, "compat", "golden", "power_save.json")
MINIMAL = '[burst]\nstate_dir = "/tmp/x"\n'


def test_the_config_is_named_else_beside_slurm_conf_else_in_etc(tmp_path):
    conf_dir = tmp_path / "etc-slurm"
    conf_dir.mkdir()
    slurm_conf = conf_dir / "slurm.conf"
    slurm_conf.write_text("ClusterName=c\n")
    named = str(tmp_path / "mine.toml")
    assert config_path({"SFLOW_BURST_CONFIG": named, "SLURM_CONF": str(slurm_conf)}) == named
    # No burst.toml beside slurm.conf: the fixed path.
    assert config_path({"SLURM_CONF": str(slurm_conf)}) == "/etc/sflow/burst.toml"
    (conf_dir / "burst.toml").write_text(MINIMAL)
    assert config_path({"SLURM_CONF": str(slurm_conf)}) == str(conf_dir / "burst.toml")
    assert config_path({}) == "/etc/sflow/burst.toml"
    assert load(None, {"SLURM_CONF": str(slurm_conf)}).path == str(conf_dir / "burst.toml")


def test_a_program_given_only_what_slurmctld_gives_finds_burst_toml_beside_slurm_conf(held, tmp_path):
    state, config, _ = held
    with open(GOLDEN) as handle:
        given = json.load(handle)
    # Every environment slurmctld 22.05 gave a power-saving program, as recorded: no PATH among them.
    names = {name for call in _calls(given) for name in call}
    assert names and "PATH" not in names and "SLURM_CONF" in names, names
    conf_dir = tmp_path / "etc-slurm"
    conf_dir.mkdir()
    (conf_dir / "slurm.conf").write_text("ClusterName=c\n")
    (conf_dir / "burst.toml").write_text(config.read_text())
    env = {"SLURM_CONF": str(conf_dir / "slurm.conf"), "LC_CTYPE": "C.UTF-8",
           "PYTHONPATH": ROOT}  # the console script's own sys.path, here given by hand
    code = "import sys; from sflow.burst.programs import suspend_main; suspend_main()"
    done = subprocess.run([sys.executable, "-c", code, "mithril-gpu-1"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert [(r.kind, r.hostlist) for r in requests(state)] == [("suspend", "mithril-gpu-1")]


def _calls(golden) -> list[dict]:
    """The environments recorded in the golden file, wherever they sit in it."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            env = value.get("env")
            if isinstance(env, dict):
                found.append(env)
            elif isinstance(env, list) and all(isinstance(x, str) for x in env):
                found.append({x.partition("=")[0]: x.partition("=")[2] for x in env})
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(golden)
    return found


def test_the_boot_command_is_a_template_whose_values_are_quoted():
    settings = parse(MINIMAL, "burst.toml")
    assert settings.boot_command == "sudo slurmd -N {node} --conf-server {conf_server}"
    assert boot_command(settings.boot_command, "mithril-gpu-1", "ctl:6817") == \
        "sudo slurmd -N mithril-gpu-1 --conf-server ctl:6817"
    mine = parse(MINIMAL + 'boot_command = "/opt/site/boot-node --name {node} --server={conf_server}"\n', "b")
    assert boot_command(mine.boot_command, "n 1", "a;b") == "/opt/site/boot-node --name 'n 1' --server='a;b'"
    assert SshBooter("/tmp/state", mine.boot_command).command == mine.boot_command


@pytest.mark.parametrize("template, said", [
    ("slurmd -N {name}", "boot_command may name only {node} and {conf_server}, not {name}"),
    ("slurmd -N {node", "boot_command: "),
    ("  ", "boot_command may name only"),
])
def test_a_bad_boot_command_is_refused_naming_it(template, said):
    with pytest.raises(BurstError) as err:
        parse(MINIMAL + f"boot_command = {json.dumps(template)}\n", "burst.toml")
    assert said in str(err.value)


def test_slurm_commands_are_found_in_usr_bin_unless_told_with_no_path_needed(tmp_path, monkeypatch):
    assert parse(MINIMAL, "b").slurm_bin == "/usr/bin"
    assert parse(MINIMAL + 'slurm_bin = ""\n', "b").slurm_bin == "/usr/bin"
    assert Slurm().scontrol_path == "/usr/bin/scontrol"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "calls"
    for name in ("scontrol", "squeue"):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\necho {name} \"$@\" >> {record}\necho 7\n")
        script.chmod(0o755)
    monkeypatch.delenv("PATH", raising=False)  # as slurmctld runs its programs, and so the service
    settings = parse(MINIMAL + f'slurm_bin = "{bin_dir}"\n', "b")
    slurm = Slurm(settings.slurm_bin, settings.scontrol)
    slurm.update_node(["n1"], State="DOWN", Reason="two words")
    assert slurm.jobs_on(["n1"]) == [7]
    assert record.read_text().splitlines() == ["scontrol update NodeName=n1 State=DOWN Reason=two words",
                                               "squeue -h -o %A -t RUNNING,COMPLETING,CONFIGURING -w n1"]
    alone = parse(MINIMAL + f'slurm_bin = "{tmp_path}/none"\nscontrol = "{bin_dir}/scontrol"\n', "b")
    assert Slurm(alone.slurm_bin, alone.scontrol).scontrol_path == f"{bin_dir}/scontrol"


def test_the_startup_script_file_is_read_and_too_long_or_missing_is_refused(tmp_path):
    assert read_startup_script(parse(MINIMAL, "b")) is None
    script = tmp_path / "image.sh"
    script.write_text("#!/bin/bash\napt-get install -y slurmd munge\n")
    settings = parse(MINIMAL + f'startup_script = "{script}"\n', "b")
    assert read_startup_script(settings) == script.read_text()
    assert mithril_settings(settings).startup_script == script.read_text()
    assert mithril_settings(parse(MINIMAL, "b")).startup_script is None  # sflow itself is not installed
    script.write_text("#" * (burst_settings.STARTUP_SCRIPT_MAX + 1))
    with pytest.raises(BurstError, match="longer than Mithril's 10000 characters"):
        read_startup_script(settings)
    with pytest.raises(BurstError, match=r"cannot read startup_script \S+gone.sh: No such file"):
        read_startup_script(parse(MINIMAL + f'startup_script = "{tmp_path}/gone.sh"\n', "b"))


def test_every_bid_carries_the_startup_script(tmp_path, monkeypatch):
    monkeypatch.setenv("MITHRIL_API_KEY", KEY)
    script = tmp_path / "image.sh"
    script.write_text("#!/bin/bash\necho installing slurmd\n")
    state = str(tmp_path / "state")
    settings = settings_for(state, "")
    with emulator() as emu:
        settings = replace(settings, api_url=emu.url, startup_script=str(script))
        with running(settings, FakeSlurm(), FakeBooter()):
            conn = store.open_store(state)
            try:
                store.add_request(conn, "resume", "mithril-gpu-1", None, 0.0)
            finally:
                conn.close()
            assert wait_for(lambda: market_bids(emu))
            (bid,) = market_bids(emu)
    assert bid.launch_specification.get("startup_script") == "#!/bin/bash\necho installing slurmd\n"
