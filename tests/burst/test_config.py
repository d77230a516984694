"""``flow burst config``: the slurm.conf, gres.conf and burst.toml that burst a SLURM cluster onto Mithril.

The rendering is tested on a catalog written here; the command itself against
the emulator's catalog, served on loopback from this process.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib

import pytest
from click.testing import CliRunner

from sflow.burst import config
from sflow.burst.config import BurstPartition, PartitionSpec, Programs, Service, Timing
from sflow.cli.flow import cli
from sflow.conf import load_file
from sflow.errors import SlurmError
from sflow.mithril.catalog import Catalog, InstanceType, Market
from sflow.mithril.emulator import start_emulator
from sflow.mithril.translate import parse_limit_price

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "compat"))
import record_burst_conf  # noqa: E402

GOLDEN = json.load(open(record_burst_conf.OUT))

H100 = InstanceType("it_h100", "8xh100", 8, "h100", 224, 1800)
A100 = InstanceType("it_a100", "1xa100", 1, "a100", 16, 120)
CPU = InstanceType("it_cpu", "cpu.32", 0, None, 32, 128)
CATALOG = Catalog((H100, A100, CPU), (
    Market("it_h100", "us-central1-a", capacity=32, spot_price_cents=1600, minimum_price_cents=800),
    Market("it_h100", "eu-central1-a", capacity=16, spot_price_cents=1200, minimum_price_cents=800),
    Market("it_a100", "us-central1-a", capacity=4, spot_price_cents=100, minimum_price_cents=60),
    Market("it_cpu", "us-central1-a", capacity=4, spot_price_cents=100),
))
PROGRAMS = Programs("/opt/sflow/bin/sflow-burst-resume", "/opt/sflow/bin/sflow-burst-suspend",
                    "/opt/sflow/bin/sflow-burst-resume-fail")
SERVICE = Service("https://api.mithril.ai", None, "/etc/sflow/config.toml")


def _resolve(*specs: PartitionSpec, plan=None) -> list[BurstPartition]:
    return config.resolve(list(specs), CATALOG, plan)[0]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


# ---------------------------------------------------------------- the command line's words


def test_a_partition_is_a_name_an_instance_type_and_a_node_count():
    assert config.parse_partition("gpu=8xh100:8") == PartitionSpec("gpu", "8xh100", 8)
    assert config.parse_partition("gpu=h100-80gb.sxm.8x") == PartitionSpec("gpu", "h100-80gb.sxm.8x", 4)
    for bad, said in [("gpu", "NAME=TYPE"), ("=8xh100", "NAME=TYPE"), ("gpu=", "NAME=TYPE"),
                      ("gpu=8xh100:0", "1 or more"), ("gpu=8xh100:x", "1 or more"), ("g/pu=8xh100", "letters")]:
        with pytest.raises(SlurmError, match=said):
            config.parse_partition(bad)


def test_an_option_without_a_name_is_for_every_partition_without_its_own():
    specs = config.with_options([PartitionSpec("a", "8xh100"), PartitionSpec("b", "1xa100")],
                                regions=["us-central1-a"], prices=["b=$0.90", "$2.40/gpu-hr"], prefixes=["a=fast"])
    assert [(s.region, s.limit_price, s.prefix) for s in specs] == [
        ("us-central1-a", "$2.40/gpu-hr", "fast"), ("us-central1-a", "$0.90", None)]
    with pytest.raises(SlurmError, match=r"--region c=x: no partition c \(--partition gives a, b\)"):
        config.with_options([PartitionSpec("a", "8xh100"), PartitionSpec("b", "1xa100")], regions=["c=x"])
    with pytest.raises(SlurmError, match="--partition a is given twice"):
        config.with_options([PartitionSpec("a", "8xh100"), PartitionSpec("a", "1xa100")])


# ---------------------------------------------------------------- against the catalog


def test_the_limit_price_reads_as_sflows_limit_price_directive():
    for text in ("$2.40/gpu-hr", "2.40/GPU-hour", "$19.20", "19.20/hr", "$19.20/instance-hr"):
        (part,) = _resolve(PartitionSpec("gpu", "8xh100", region="us-central1-a", limit_price=text))
        assert part.limit_cents == parse_limit_price(text, 8, "8xh100") == 1920
    with pytest.raises(SlurmError, match="Invalid --limit-price specification: 2/foo"):
        _resolve(PartitionSpec("gpu", "8xh100", limit_price="2/foo"))


def test_a_limit_below_mithrils_minimum_is_refused_and_one_below_the_price_now_is_warned_of():
    with pytest.raises(SlurmError, match=r"below Mithril's minimum of \$8.00/instance-hr \(\$1.00/GPU-hr\)"):
        _resolve(PartitionSpec("gpu", "8xh100", limit_price="$0.50/gpu-hr"))
    parts, warnings = config.resolve([PartitionSpec("gpu", "8xh100", region="us-central1-a",
                                                    limit_price="$1.50/gpu-hr")], CATALOG)
    assert parts[0].limit_cents == 1200
    assert warnings == ["partition gpu: 8xh100 in us-central1-a costs $16.00/instance-hr ($2.00/GPU-hr) now, "
                        "above the limit price: its nodes wait until the price falls to $12.00"]


def test_without_a_limit_the_price_now_with_headroom_capped_as_for_a_job():
    (part,) = _resolve(PartitionSpec("gpu", "8xh100", region="us-central1-a"))
    assert part.limit_cents == 2400  # $16.00 x 1.5
    (part,) = _resolve(PartitionSpec("gpu", "8xh100", region="us-central1-a"), plan={"max_price_per_gpu_hour": "$2.50"})
    assert part.limit_cents == 2000
    with pytest.raises(SlurmError, match=r"above the cap of \$1.50/GPU-hr; give --limit-price"):
        _resolve(PartitionSpec("gpu", "8xh100", region="us-central1-a"), plan={"max_price_per_gpu_hour": "$1.50"})


def test_the_region_is_the_cheapest_unless_named_and_a_wrong_one_lists_the_offered():
    (part,) = _resolve(PartitionSpec("gpu", "8xh100"))
    assert part.market.region == "eu-central1-a"
    with pytest.raises(SlurmError, match="partition gpu: 8xh100 is not offered in us-west1-b; "
                                         "it is offered in eu-central1-a, us-central1-a"):
        _resolve(PartitionSpec("gpu", "8xh100", region="us-west1-b"))


def test_an_unknown_instance_type_lists_the_catalog():
    with pytest.raises(SlurmError) as caught:
        _resolve(PartitionSpec("gpu", "9xh100"))
    assert caught.value.message == (
        "partition gpu: no Mithril instance type 9xh100; the catalog offers 8xh100 (8 x H100, 224 CPUs, 1800 GB); "
        "1xa100 (1 x A100, 16 CPUs, 120 GB); cpu.32 (32 CPUs, 128 GB)")
    with pytest.raises(SlurmError, match="cpu.32 has no GPUs"):
        _resolve(PartitionSpec("cpu", "cpu.32"))


def test_two_partitions_may_not_share_node_names():
    with pytest.raises(SlurmError, match="two partitions name their nodes n-N"):
        _resolve(PartitionSpec("a", "8xh100", prefix="n"), PartitionSpec("b", "1xa100", prefix="n"))
    with pytest.raises(SlurmError, match="node prefix 1st"):
        _resolve(PartitionSpec("a", "8xh100", prefix="1st"))


# ---------------------------------------------------------------- the text


def test_the_slurm_conf_lines():
    parts = _resolve(PartitionSpec("gpu", "8xh100", 8, "us-central1-a", "$2.40/gpu-hr"),
                     PartitionSpec("small", "1xa100", 1, limit_price="$0.90"))
    text = config.slurm_conf(parts, Timing(), PROGRAMS)
    assert _lines(text) == [
        "GresTypes=gpu",
        "PrivateData=cloud",
        "ResumeProgram=/opt/sflow/bin/sflow-burst-resume",
        "SuspendProgram=/opt/sflow/bin/sflow-burst-suspend",
        "ResumeFailProgram=/opt/sflow/bin/sflow-burst-resume-fail",
        "ResumeTimeout=1800",
        "SuspendTimeout=300",
        "ResumeRate=0",
        "SuspendRate=0",
        "TreeWidth=65533",
        "SlurmctldParameters=enable_configless,cloud_reg_addrs,idle_on_node_suspend",
        # 1800 GiB less 5%, 120 GiB less 5%: what the kernel and the OS keep.
        "NodeName=mithril-gpu-[1-8] State=CLOUD CPUs=224 RealMemory=1751040 Gres=gpu:h100:8 "
        "Features=8xh100,us-central1-a",
        "PartitionName=gpu Nodes=mithril-gpu-[1-8] Default=NO State=UP SuspendTime=600 ResumeTimeout=1800 "
        "SuspendTimeout=300",
        "NodeName=mithril-small-1 State=CLOUD CPUs=16 RealMemory=116736 Gres=gpu:a100:1 "
        "Features=1xa100,us-central1-a",
        "PartitionName=small Nodes=mithril-small-1 Default=NO State=UP SuspendTime=600 ResumeTimeout=1800 "
        "SuspendTimeout=300",
    ]
    assert "# RealMemory leaves 92160 MB of the 1843200 MB to the kernel and the OS." in text
    assert "spot limit $19.20/instance-hr ($2.40/GPU-hr)." in text
    assert all(len(line) <= 1024 for line in text.splitlines())  # slurm.conf's line limit


def test_a_small_instance_keeps_at_least_two_gibibytes_for_the_os():
    assert config.real_memory_mb(InstanceType("it_x", "x", 1, "t4", 4, 16)) == 16 * 1024 - 2048


def test_timings_given_replace_the_defaults_everywhere():
    text = config.slurm_conf(_resolve(PartitionSpec("gpu", "8xh100")), Timing(900, 120, 60), PROGRAMS)
    assert "ResumeTimeout=900\n" in text and "SuspendTimeout=60\n" in text
    assert "SuspendTime=120 ResumeTimeout=900 SuspendTimeout=60\n" in text
    assert "\nSuspendTime=" not in text  # never cluster-wide: the cluster's own nodes would be powered down


def test_sflows_own_slurm_conf_parser_reads_the_lines(tmp_path):
    parts = _resolve(PartitionSpec("gpu", "8xh100", 2), PartitionSpec("small", "1xa100", 1))
    path = tmp_path / "slurm.conf"
    path.write_text("NodeName=node1 CPUs=2 RealMemory=2000\nPartitionName=debug Nodes=node1 Default=YES\n"
                    + config.slurm_conf(parts, Timing(), PROGRAMS))
    cluster = load_file(str(path))
    node = cluster.node("mithril-gpu-2")
    assert (node.cpus, node.real_memory_mb, node.gpus, node.gpu_type, node.state) == (224, 1751040, 8, "h100", "CLOUD")
    assert node.features == ("8xh100", "eu-central1-a")
    assert cluster.partition("small").nodes == ("mithril-small-1",)
    assert cluster.partition().name == "debug"  # the burst partitions are never the default


def test_the_gres_conf_lines():
    parts = _resolve(PartitionSpec("gpu", "8xh100", 8), PartitionSpec("small", "1xa100", 1))
    assert _lines(config.gres_conf(parts)) == [
        "NodeName=mithril-gpu-[1-8] Name=gpu Type=h100 File=/dev/nvidia[0-7]",
        "NodeName=mithril-small-1 Name=gpu Type=a100 File=/dev/nvidia0",
    ]


def test_the_burst_toml_says_where_the_key_is_and_never_holds_it():
    parts = _resolve(PartitionSpec("gpu", "8xh100", 8, "us-central1-a", "$2.40/gpu-hr"),
                     PartitionSpec("small", "1xa100", 1))
    text = config.burst_toml(parts, Service("https://api.mithril.ai", 'proj "x"', "/etc/sflow/config.toml"))
    data = tomllib.loads(text)
    assert data == {"burst": {
        "api_url": "https://api.mithril.ai", "project": 'proj "x"', "api_key_file": "/etc/sflow/config.toml",
        "partitions": {
            "gpu": {"nodes": "mithril-gpu-[1-8]", "node_prefix": "mithril-gpu", "node_count": 8,
                    "instance_type": "it_h100", "instance_type_name": "8xh100", "region": "us-central1-a",
                    "limit_price": "$19.20/instance-hr"},
            "small": {"nodes": "mithril-small-1", "node_prefix": "mithril-small", "node_count": 1,
                      "instance_type": "it_a100", "instance_type_name": "1xa100", "region": "us-central1-a",
                      "limit_price": "$1.50/instance-hr"},
        }}}
    # The limit reads back as the same price through #SFLOW --limit-price's parser.
    assert parse_limit_price(data["burst"]["partitions"]["gpu"]["limit_price"], 8, "8xh100") == 1920
    assert "api_key =" not in text and "fkey" not in text


def test_the_programs_are_absolute_paths_beside_this_interpreter():
    programs = config.program_paths()
    assert [os.path.basename(p) for p in (programs.resume, programs.suspend, programs.resume_fail)] == \
        ["sflow-burst-resume", "sflow-burst-suspend", "sflow-burst-resume-fail"]
    assert all(os.path.isabs(p) for p in (programs.resume, programs.suspend, programs.resume_fail))


# ---------------------------------------------------------------- the command, on the emulator's catalog

KEY = "fkey_burst_5ecret"


@pytest.fixture(scope="module")
def emulator():
    emu = start_emulator(tick=3600, startup=0.0, api_key=KEY)
    yield emu
    emu.close()


@pytest.fixture
def flow(emulator, tmp_path):
    env = {"MITHRIL_API_URL": emulator.url, "MITHRIL_API_KEY": KEY, "SFLOW_CONFIG": str(tmp_path / "config.toml"),
           "MITHRIL_PROJECT": None}

    def run(*argv: str):
        return CliRunner().invoke(cli, ["burst", "config", *argv], env=env)
    return run


def test_the_command_prints_the_three_files_from_the_live_catalog(flow, emulator, tmp_path):
    done = flow("-p", "gpu=8xh100:8", "--limit-price", "gpu=$2.40/gpu-hr", "--region", "us-central1-a")
    assert done.exit_code == 0, done.stderr
    out = done.stdout
    assert [line for line in out.splitlines() if line.startswith("# ----")] == [
        "# ---- slurm.conf.burst ----", "# ---- gres.conf.burst ----", "# ---- burst.toml ----"]
    assert "NodeName=mithril-gpu-[1-8] State=CLOUD CPUs=224 RealMemory=1751040 Gres=gpu:h100:8 " \
           "Features=8xh100,us-central1-a\n" in out
    assert "PartitionName=gpu Nodes=mithril-gpu-[1-8] Default=NO State=UP SuspendTime=600 ResumeTimeout=1800 " \
           "SuspendTimeout=300\n" in out
    assert "NodeName=mithril-gpu-[1-8] Name=gpu Type=h100 File=/dev/nvidia[0-7]\n" in out
    toml = tomllib.loads(out.split("# ---- burst.toml ----\n")[1])
    assert toml["burst"]["api_url"] == emulator.url
    assert toml["burst"]["api_key_file"] == str(tmp_path / "config.toml")
    assert toml["burst"]["partitions"]["gpu"]["instance_type"] == emulator.market.catalog.find("8xh100").fid
    assert toml["burst"]["partitions"]["gpu"]["limit_price"] == "$19.20/instance-hr"
    assert KEY not in done.output


def test_the_timing_options_and_the_output_directory(flow, tmp_path):
    out_dir = tmp_path / "out"
    done = flow("-p", "gpu=8xa100:2", "-p", "one=1xa100:1", "--limit-price", "$3.00/gpu-hr", "--suspend-time", "900",
                "--resume-timeout", "2400", "--suspend-timeout", "120", "-o", str(out_dir))
    assert done.exit_code == 0, done.stderr
    assert done.stdout == ""
    assert sorted(os.listdir(out_dir)) == ["burst.toml", "gres.conf.burst", "slurm.conf.burst"]
    conf = (out_dir / "slurm.conf.burst").read_text()
    assert "PartitionName=one Nodes=mithril-one-1 Default=NO State=UP SuspendTime=900 ResumeTimeout=2400 " \
           "SuspendTimeout=120\n" in conf
    assert "ResumeTimeout=2400\n" in conf
    assert "flow: wrote " in done.stderr


@pytest.mark.parametrize("argv, said", [
    (["-p", "gpu=9xh100"], "flow: error: partition gpu: no Mithril instance type 9xh100; the catalog offers "
                           "8xh100 (8 x H100, 224 CPUs, 1800 GB); 8xa100 (8 x A100, 128 CPUs, 1000 GB); "
                           "4xa100 (4 x A100, 64 CPUs, 500 GB); 1xa100 (1 x A100, 16 CPUs, 120 GB)\n"),
    (["-p", "gpu=4xa100", "--region", "eu-central1-a"],
     "flow: error: partition gpu: 4xa100 is not offered in eu-central1-a; it is offered in us-central1-a\n"),
    (["-p", "gpu=8xh100", "--limit-price", "2.40/hour-gpu"],
     "flow: error: Invalid --limit-price specification: 2.40/hour-gpu: write dollars per instance-hour ($16.00) "
     "or per GPU-hour (2.00/gpu-hr)\n"),
    (["-p", "gpu=8xh100:many"], "flow: error: --partition gpu=8xh100:many: the node count must be a whole number "
                                "of 1 or more\n"),
])
def test_bad_input_is_one_error_line_and_exit_1(flow, argv, said):
    done = flow(*argv)
    assert (done.exit_code, done.stderr, done.stdout) == (1, said, "")


def test_help_shows_the_forms_and_the_defaults(flow):
    done = CliRunner().invoke(cli, ["burst", "config", "--help"])
    assert done.exit_code == 0
    for text in ("NAME=TYPE[:COUNT]", "[NAME=]PRICE", "$2.00/gpu-hr", f"default {config.RESUME_TIMEOUT}",
                 f"default {config.SUSPEND_TIME}", f"default {config.SUSPEND_TIMEOUT}", "--output"):
        assert text in done.output
    assert "config" in CliRunner().invoke(cli, ["burst", "--help"]).output


# ---------------------------------------------------------------- as a real slurmctld 22.05 reads them


def test_the_recorded_lines_are_the_lines_rendered_now():
    # Changed rendering: re-record with compat/record_burst_conf.py.
    assert (GOLDEN["slurm_conf"], GOLDEN["gres_conf"]) == record_burst_conf.rendered()


def test_slurmctld_reads_every_line_and_power_saves_only_the_cloud_nodes():
    assert GOLDEN["parse_errors"] == []
    assert GOLDEN["power_save"] == "Power save mode: 5 nodes"  # mithril-gpu-[1-4], mithril-small-1; not own1
    gpu, own = GOLDEN["nodes"]["mithril-gpu-4"], GOLDEN["nodes"]["own1"]
    assert (gpu["State"], gpu["CPUTot"], gpu["RealMemory"], gpu["Gres"], gpu["AvailableFeatures"]) == \
        ("IDLE+CLOUD+POWERED_DOWN", "224", "1751040", "gpu:h100:8", "8xh100,us-central1-a")
    assert "POWERED_DOWN" not in own["State"]
    assert {k: GOLDEN["partitions"]["gpu"][k] for k in ("Default", "SuspendTime", "ResumeTimeout", "SuspendTimeout")} \
        == {"Default": "NO", "SuspendTime": "600", "ResumeTimeout": "1800", "SuspendTimeout": "300"}
    assert GOLDEN["config"]["SuspendTime"] == "INFINITE"  # the cluster's own nodes keep running
    assert GOLDEN["config"]["TreeWidth"] == "65533" and GOLDEN["config"]["PrivateData"] == "cloud"
