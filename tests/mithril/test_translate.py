"""The translator from a SLURM job request to a Mithril plan: scripts in, plans (or refusals) out."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

import pytest

from sflow.backends import chosen_name, default_name
from sflow.conf import Cluster, Node, Partition
from sflow.errors import SlurmError
from sflow.mithril.catalog import Catalog, Slot
from sflow.mithril.money import dollars, parse_dollars
from sflow.mithril.translate import (
    Plan, PlanConfig, demand, format_plan, node_range, parse_limit_price, plan, reservation_hours,
)
from sflow.slurm.request import parse_sbatch

IDENT = dict(user="alice", uid=1000, gid=1000, host="login1")


def _type(fid, name, gpus, gpu_type, cpus, ram_gb, price):
    return {"fid": fid, "name": name, "num_cpus": cpus, "cpu_type": "Intel", "ram_gb": ram_gb, "num_gpus": gpus,
            "gpu_type": gpu_type, "gpu_memory_gb": 80 if gpus else 0, "gpu_socket": "SXM5" if gpus else "",
            "local_storage_gb": 1000, "network_type": None, "ib_count": 0, "bridge_count": 0,
            "hourly_price": price}


INSTANCE_TYPES = [
    _type("it_1xh100", "1xh100", 1, "H100", 24, 225, 2.5),
    _type("it_4xh100", "4xh100", 4, "H100", 96, 900, 10.0),
    _type("it_8xh100", "8xh100", 8, "H100", 192, 1800, 20.0),
    _type("it_1xa100", "1xa100", 1, "A100", 16, 120, 1.6),
    _type("it_8xa100", "8xa100", 8, "A100", 128, 1024, 12.0),
    _type("it_cpu32", "cpu.32", 0, "", 32, 128, 0.9),
    _type("it_cpu96", "cpu.96", 0, "", 96, 384, 2.0),
]


def _auction(type_id, region, capacity, price):
    return {"fid": f"auc_{type_id}_{region}", "instance_type": type_id, "region": region, "capacity": capacity,
            "last_instance_price": price, "lowest_allocated_price": None, "adjustable_memory": False}


AUCTIONS = {"data": [  # paged, as the API may answer
    _auction("it_8xh100", "us-central1-a", 4, "$16.00"),
    _auction("it_8xh100", "us-east1-b", 1, "$12.00"),
    _auction("it_8xh100", "eu-west1-a", 8, "$18.00"),
    _auction("it_1xh100", "us-central1-a", 10, "$2.00"),
    _auction("it_4xh100", "us-central1-a", 2, "$8.50"),
    _auction("it_8xa100", "us-central1-a", 4, "$10.00"),
    _auction("it_1xa100", "us-central1-a", 4, "$1.30"),
    _auction("it_cpu32", "us-central1-a", 20, "$0.80"),
    _auction("it_cpu96", "us-central1-a", 5, "$1.60"),
], "next_cursor": None}

PRICING = {
    "it_8xh100": {
        "us-central1-a": {"spot_price_cents": 1600, "reserved_price_cents": 2000, "minimum_price_cents": 800},
        "us-east1-b": {"spot_price_cents": 1200, "reserved_price_cents": 2400, "minimum_price_cents": 800},
        "eu-west1-a": {"spot_price_cents": 1800, "reserved_price_cents": 1900, "minimum_price_cents": 800},
    },
    "1xh100": {"minimum_price_cents": 100, "reserved_price_cents": 300},  # by name, for every region
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.from_api(INSTANCE_TYPES, AUCTIONS, PRICING)


def job(*directives: str, argv=(), env=None):
    """The JobRequest sbatch builds from a script holding these directive lines."""
    script = "#!/bin/sh\n" + "".join(f"{line}\n" for line in directives) + "srun hostname\n"
    return parse_sbatch(list(argv), env=env or {}, cwd="/tmp", script_text=script, **IDENT).request


def refusal(request, catalog, config=None) -> str:
    with pytest.raises(SlurmError) as caught:
        plan(request, catalog, config)
    assert "\n" not in caught.value.message
    return caught.value.message


# ------------------------------------------------------------------ the catalog


def test_catalog_reads_the_api_shapes(catalog):
    kind = catalog.instance_type("8XH100")
    assert (kind.id, kind.gpus, kind.gpu_type, kind.cpus, kind.memory_gb, kind.list_price_cents) == \
        ("it_8xh100", 8, "h100", 192, 1800, 2000)
    assert catalog.instance_type("it_8xh100") is kind
    assert catalog.instance_type("cpu.32").gpu_type is None
    assert catalog.gpu_types() == ["a100", "h100"]
    assert sorted(m.region for m in catalog.markets_of("it_8xh100")) == ["eu-west1-a", "us-central1-a", "us-east1-b"]
    east = catalog.market("it_8xh100", "us-east1-b")
    assert (east.capacity, east.spot_price_cents, east.minimum_price_cents, east.reserved_price_cents) == \
        (1, 1200, 800, 2400)
    # Region-less pricing named by type name fills every region of that type.
    one = catalog.market("it_1xh100", "us-central1-a")
    assert (one.spot_price_cents, one.minimum_price_cents, one.reserved_price_cents) == (200, 100, 300)
    assert catalog.market("it_cpu32", "us-central1-a").minimum_price_cents is None


def test_catalog_price_precedence_and_list_shapes():
    types = [_type("it_a", "8xh100", 8, "H100", 192, 1800, 20.0)]
    auctions = [_auction("it_a", "r1", 3, "$10.00"), _auction("it_a", "r2", 3, "$11.00"),
                _auction("it_unknown", "r1", 9, "$1.00")]
    pricing = [
        {"instance_type": "it_a", "spot_price_cents": 999, "minimum_price_cents": 500},  # every region
        {"instance_type": "8xh100", "region": "r2", "spot_price_cents": 1150, "available_capacity": 7},
    ]
    built = Catalog.from_api(types, auctions, pricing)
    r1, r2 = built.market("it_a", "r1"), built.market("it_a", "r2")
    assert (r1.spot_price_cents, r1.minimum_price_cents, r1.capacity) == (1000, 500, 3)  # the auction beats type-wide
    assert (r2.spot_price_cents, r2.minimum_price_cents, r2.capacity) == (1150, 500, 7)  # the region's own answer wins
    assert len(built.markets) == 2  # an auction for a type not described is left out


def test_catalog_reservation_slots_and_region_only_pricing():
    types = [_type("it_a", "8xh100", 8, "H100", 192, 1800, 20.0)]
    slots = {"it_a": {"r9": [{"start_time": "2024-01-01T00:00:00Z", "end_time": "2024-01-01T06:00:00Z",
                              "quantity": 2}]}}
    built = Catalog.from_api(types, [], {"it_a": {"r9": {"reserved_price_cents": 2100}}}, slots)
    market = built.market("it_a", "r9")
    start = datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp()
    assert market.slots == (Slot(start, start + 6 * 3600, 2),)
    assert market.reserved_price_cents == 2100 and not market.on_spot


@pytest.mark.parametrize("text, cents", [
    ("$16", 1600), ("16.00", 1600), (" $1.5 ", 150), (".5", 50), (0.12, 12), (12, 1200),
])
def test_money_parses_without_float(text, cents):
    assert parse_dollars(text) == cents


@pytest.mark.parametrize("text", ["-1", "1e3", "nan", "", "$", "1.234", "abc", "$1,000"])
def test_money_refuses(text):
    with pytest.raises(ValueError):
        parse_dollars(text)


def test_money_shows_dollars():
    assert [dollars(c) for c in (2400, 5, 0, 123456)] == ["$24.00", "$0.05", "$0.00", "$1234.56"]


# ------------------------------------------------------------------ instance type and count


GPU_SPELLINGS = [
    # (directive lines, expected instance type, expected count)
    (["#SBATCH --gpus=8"], "8xa100", 1),  # no type: the cheaper of the 8-GPU types
    (["#SBATCH -G 1"], "1xa100", 1),
    (["#SBATCH --gpus=h100:8"], "8xh100", 1),
    (["#SBATCH -G h100:3"], "4xh100", 1),
    (["#SBATCH --gpus-per-node=h100:4"], "4xh100", 1),
    (["#SBATCH --gpus-per-node=2"], "4xh100", 1),  # fewest GPUs that hold 2, before cheaper 8-GPU types
    (["#SBATCH -N 1 --ntasks-per-node=4 --gpus-per-task=1 --constraint=h100"], "4xh100", 1),
    (["#SBATCH --gres=gpu:h100:8"], "8xh100", 1),
    (["#SBATCH --gres=gpu:1 --constraint=h100"], "1xh100", 1),
    (["#SBATCH --gpus=16 --constraint=h100"], "8xh100", 2),  # two nodes, as SLURM would need
    (["#SBATCH --gpus=h100:16"], "8xh100", 2),
    (["#SBATCH --gpus=h100:12"], "8xh100", 2),  # fewest nodes beats exact fit on three 4xh100
    (["#SBATCH -N 2 --gpus-per-node=h100:8"], "8xh100", 2),
    (["#SBATCH --nodes=4 --gpus=h100:4"], "1xh100", 4),
    (["#SBATCH -N 3"], "cpu.32", 3),
    (["#SBATCH --constraint=h100|a100 --gpus=1"], "1xa100", 1),
    (["#SBATCH --constraint=h100"], "1xh100", 1),  # a GPU type alone narrows the family
    (["#SBATCH --partition=h100 --gpus=8"], "8xh100", 1),  # a partition named after a GPU type
    (["#SBATCH --partition=batch --gpus=8"], "8xa100", 1),  # a partition that names none leaves it open
    (["#SBATCH --gpus=8", "#SFLOW --instance-type=8xh100"], "8xh100", 1),
    (["#SBATCH --gpus=a100:8", "#SFLOW --instance-type=8xh100"], "8xh100", 1),  # overrides the type
    (["#SBATCH --gpus=16", "#SFLOW --instance-type=it_8xh100"], "8xh100", 2),
    (["#SFLOW --instance-type=4xh100", "#SBATCH -N 3"], "4xh100", 3),
]


@pytest.mark.parametrize("lines, name, count", GPU_SPELLINGS)
def test_gpu_vocabulary(catalog, lines, name, count):
    chosen = plan(job(*lines), catalog)
    assert (chosen.instance_type, chosen.instance_quantity) == (name, count)


@pytest.mark.parametrize("lines, name", [
    (["#SBATCH --constraint=a100-80gb --gpus=1"], "1xa100"),
    (["#SBATCH --partition=big-a100 --gpus=8"], "8xa100"),
    (["#SBATCH --gres=gpu:a100-80gb:8"], "8xa100"),
    (["#SBATCH --gpus=A100-80GB:8"], "8xa100"),
])
def test_gpu_type_table(catalog, lines, name):
    config = {"gpu_types": {"a100-80gb": "a100", "big-a100": "a100"}}
    assert plan(job(*lines), catalog, config).instance_type == name


def test_fewest_gpus_before_the_cheapest():
    types = [_type("it_2", "2xh100", 2, "H100", 48, 450, 6.0), _type("it_4", "4xh100", 4, "H100", 96, 900, 5.0)]
    built = Catalog.from_api(types, [_auction("it_2", "r1", 5, "$6.00"), _auction("it_4", "r1", 5, "$5.00")])
    assert plan(job("#SBATCH --gpus-per-node=2"), built).instance_type == "2xh100"
    assert plan(job("#SBATCH --gpus-per-node=3"), built).instance_type == "4xh100"


def test_gpu_type_table_words_are_unknown_without_it(catalog):
    assert "a100-80gb GPUs" in refusal(job("#SBATCH --constraint=a100-80gb --gpus=1"), catalog)


def test_command_line_and_environment_reach_the_plan(catalog):
    request = job("#SBATCH --gpus=h100:8", argv=["-N", "2"], env={"SFLOW_REGION": "eu-west1-a"})
    chosen = plan(request, catalog)
    assert (chosen.instance_quantity, chosen.region) == (2, "eu-west1-a")


FITS = [
    (["#SBATCH -c 4"], "cpu.32", 1),  # no GPUs: the cheapest that fits
    (["#SBATCH -c 64"], "cpu.96", 1),
    (["#SBATCH --mem=200G"], "cpu.96", 1),
    (["#SBATCH -n 4 -c 32"], "cpu.96", 2),  # as cheap as four cpu.32, on fewer nodes
    (["#SBATCH -N 1 --ntasks-per-node=3 -c 32"], "cpu.96", 1),
    (["#SBATCH --gpus=h100:1 -c 32"], "4xh100", 1),  # 1xh100 has 24 CPUs
    (["#SBATCH --gpus=h100:1 --mem=300G"], "4xh100", 1),  # 1xh100 has 225G
    (["#SBATCH --gpus=h100:1 --mem-per-gpu=500G"], "4xh100", 1),
    (["#SBATCH --gpus-per-node=h100:2 --mem-per-gpu=500G"], "8xh100", 1),
    (["#SBATCH --gpus=h100:1 --ntasks-per-node=8 --mem-per-cpu=8G"], "1xh100", 1),
    (["#SBATCH --gpus=h100:1 --ntasks-per-node=8 --mem-per-cpu=32G"], "4xh100", 1),
    (["#SBATCH -n 8 -c 24 --gpus-per-task=h100:1"], "8xh100", 1),
    (["#SBATCH -n 16 -c 24 --gpus-per-task=h100:1"], "8xh100", 2),
    (["#SBATCH -n 16 --ntasks-per-node=4 --gpus-per-task=h100:1"], "4xh100", 4),
    (["#SBATCH --gpus=h100:1 --mem=0"], "1xh100", 1),  # all of a node's memory fits any node
]


@pytest.mark.parametrize("lines, name, count", FITS)
def test_cpu_and_memory_fit(catalog, lines, name, count):
    chosen = plan(job(*lines), catalog)
    assert (chosen.instance_type, chosen.instance_quantity) == (name, count)


@pytest.mark.parametrize("lines, per_node", [
    (["#SBATCH -N 2 -n 6 -c 2 --gpus=8"], dict(gpus=4, cpus=6, tasks=3)),
    (["#SBATCH -N 2 --ntasks-per-node=2 --gpus-per-task=3 --mem-per-gpu=10G"],
     dict(gpus=6, cpus=2, tasks=2, memory_mb=60 * 1024)),
    (["#SBATCH -N 2 --gres=gpu:2 --gpus-per-node=1 --mem-per-cpu=1000 -c 3"],
     dict(gpus=2, cpus=3, tasks=1, memory_mb=3000)),
])
def test_demand_per_node(lines, per_node):
    need = demand(job(*lines), 2)
    assert {k: getattr(need, k) for k in per_node} == per_node


@pytest.mark.parametrize("lines, expected", [
    (["#SBATCH -N 3"], (3, 3)),
    (["#SBATCH -N 2-4"], (2, 4)),
    (["#SBATCH -n 6 --ntasks-per-node=2"], (3, 6)),
    (["#SBATCH --gpus=16"], (1, 16)),
    (["#SBATCH -c 4"], (1, 1)),
])
def test_node_range(lines, expected):
    assert node_range(job(*lines)) == expected


def test_node_range_takes_the_fewest(catalog):
    assert plan(job("#SBATCH -N 1-4 --gpus=h100:16"), catalog).instance_quantity == 2


REFUSED_SHAPES = [
    (["#SBATCH -N 1 --gpus-per-node=16"],
     "no Mithril instance type has 16 GPUs per node; largest is 8xh100 (8 GPUs); use --nodes=2 --gpus-per-node=8"),
    (["#SBATCH -N 1 --gpus-per-node=h100:12"],
     "no Mithril instance type has 12 h100 GPUs per node; largest is 8xh100 (8 GPUs); "
     "use --nodes=2 --gpus-per-node=8"),
    (["#SBATCH -N 2 --gpus-per-node=a100:16"],
     "no Mithril instance type has 16 a100 GPUs per node; largest is 8xa100 (8 GPUs); "
     "use --nodes=4 --gpus-per-node=8"),
    (["#SBATCH -N 1 --gpus-per-node=h100:8 -c 256"],
     "no Mithril instance type with 8 GPUs has 256 CPUs per node; most is 8xh100 (192 CPUs) "
     "(1 task x 256 CPUs); ask for at most 192 CPUs per node (--ntasks-per-node x --cpus-per-task)"),
    (["#SBATCH -N 2 --ntasks-per-node=4 -c 40 --gpus-per-node=a100:1"],
     "no Mithril instance type with 1 GPU has 160 CPUs per node; most is 8xa100 (128 CPUs) "
     "(4 tasks x 40 CPUs); ask for at most 128 CPUs per node (--ntasks-per-node x --cpus-per-task)"),
    (["#SBATCH --gpus=h100:8 -c 256"],
     "no Mithril instance type has 256 CPUs per node; most is 8xh100 (192 CPUs) "
     "(1 task x 256 CPUs); ask for at most 192 CPUs per node (--ntasks-per-node x --cpus-per-task)"),
    (["#SBATCH -c 200"],
     "no Mithril instance type has 200 CPUs per node; most is 8xh100 (192 CPUs) (1 task x 200 CPUs); "
     "ask for at most 192 CPUs per node (--ntasks-per-node x --cpus-per-task)"),
    (["#SBATCH -N 1 --gpus-per-node=h100:8 --mem=4000G"],
     "no Mithril instance type with 8 GPUs has 4000G of memory per node; most is 8xh100 (1800G); "
     "ask for --mem=1800G or less per node"),
    (["#SBATCH --gpus=h200:8"], "no Mithril instance type has h200 GPUs (--gpus); GPU types offered: a100, h100"),
    (["#SBATCH --gres=gpu:v100:1"], "no Mithril instance type has v100 GPUs (--gres); GPU types offered: a100, h100"),
    (["#SBATCH --constraint=ib"], "no Mithril instance type has ib GPUs (--constraint); GPU types offered: a100, h100"),
    (["#SBATCH --gpus=h100:8 --constraint=a100"],
     "the job asks for h100 GPUs (--gpus) and a100 GPUs (--constraint); ask for one GPU type"),
    (["#SBATCH --gres=shard:2"],
     "Invalid generic resource (gres) specification: shard: Mithril instances offer only gpu"),
    (["#SFLOW --instance-type=9xh100"],
     "no Mithril instance type is named 9xh100; instance types: 1xa100, 1xh100, 4xh100, 8xa100, 8xh100, cpu.32, "
     "cpu.96"),
    (["#SFLOW --instance-type=1xh100", "#SBATCH -N 1 --gpus-per-node=8"],
     "instance type 1xh100 has 1 GPU, not 8 per node; use --nodes=8 --gpus-per-node=1"),
    (["#SFLOW --instance-type=cpu.32", "#SBATCH --gpus=1"],
     "instance type cpu.32 has no GPUs, and the job asks for GPUs; name a GPU instance type"),
    (["#SFLOW --instance-type=1xh100", "#SBATCH --mem=300G"],
     "instance type 1xh100 has 225G of memory, not 300G per node; ask for --mem=225G or less per node"),
]


@pytest.mark.parametrize("lines, message", REFUSED_SHAPES)
def test_shapes_the_market_cannot_hold(catalog, lines, message):
    assert refusal(job(*lines), catalog) == message


def test_error_renders_as_sbatch_prints_it(catalog):
    from sflow.errors import render

    with pytest.raises(SlurmError) as caught:
        plan(job("#SBATCH -N 1 --gpus-per-node=16"), catalog)
    assert render("sbatch", caught.value).startswith("sbatch: error: no Mithril instance type has 16 GPUs per node")


def test_a_fitting_type_not_offered_anywhere_is_skipped():
    types = [_type("it_s", "1xh100", 1, "H100", 24, 225, 2.0), _type("it_b", "8xh100", 8, "H100", 192, 1800, 16.0)]
    built = Catalog.from_api(types, [_auction("it_b", "r1", 2, "$16.00")])
    assert plan(job("#SBATCH --gpus=1"), built).instance_type == "8xh100"
    only_small = Catalog.from_api(types, [_auction("it_s", "r1", 2, "$2.00")])
    assert plan(job("#SBATCH --gpus=8"), only_small).instance_quantity == 8  # spread, as SLURM may
    assert refusal(job("#SBATCH -N 1 --gpus-per-node=8"), only_small) == \
        "8xh100 is not offered on spot in any region right now"
    assert refusal(job("#SBATCH -N 1 --gpus-per-node=8", "#SFLOW --region=r1"), only_small) == \
        "8xh100 is not offered on spot in r1; nor in any other region"


# ------------------------------------------------------------------ regions


@pytest.mark.parametrize("lines, region", [
    (["#SBATCH --gpus=h100:8"], "us-east1-b"),  # enough capacity (1) and the lowest price
    (["#SBATCH -N 2 --gpus-per-node=h100:8"], "us-central1-a"),  # us-east1-b has room for 1 only
    (["#SBATCH -N 6 --gpus-per-node=h100:8"], "eu-west1-a"),  # only eu-west1-a holds 6
    (["#SBATCH -N 10 --gpus-per-node=h100:8"], "us-east1-b"),  # none holds 10: the cheapest, and wait
    (["#SBATCH --gpus=h100:8", "#SFLOW --region=eu-west1-a"], "eu-west1-a"),
    (["#SBATCH --gpus=h100:1", "#SFLOW --region=eu-west1-a"], "eu-west1-a"),  # 1xh100 is not there; 8xh100 is
])
def test_region_by_capacity_then_price(catalog, lines, region):
    assert plan(job(*lines), catalog).region == region


def test_region_at_equal_price_takes_the_most_capacity():
    types = [_type("it_a", "8xh100", 8, "H100", 192, 1800, 20.0)]
    built = Catalog.from_api(types, [_auction("it_a", "a", 2, "$16.00"), _auction("it_a", "b", 9, "$16.00"),
                                     _auction("it_a", "c", 5, "$16.00")])
    assert plan(job("#SBATCH --gpus=8"), built).region == "b"


def test_region_without_capacity_says_the_bid_waits(catalog):
    chosen = plan(job("#SBATCH -N 10 --gpus-per-node=h100:8"), catalog)
    assert chosen.notes == ("us-east1-b has 1 instances free now: the bid waits for 10 at once",)


def test_no_gpu_instance_types_at_all():
    built = Catalog.from_api(INSTANCE_TYPES[5:], AUCTIONS)
    assert refusal(job("#SBATCH --gpus=2"), built) == \
        "no Mithril instance type has GPUs, and the job asks for GPUs"


@pytest.mark.parametrize("lines, message", [
    (["#SBATCH --gpus=h100:8", "#SFLOW --region=asia-east1-a"],
     "8xh100 is not offered on spot in asia-east1-a; it is offered in eu-west1-a, us-central1-a, us-east1-b"),
    (["#SFLOW --instance-type=4xh100 --region=eu-west1-a"],
     "4xh100 is not offered on spot in eu-west1-a; it is offered in us-central1-a"),
    (["#SBATCH -N 1 --gpus-per-node=a100:8", "#SFLOW --region=eu-west1-a"],
     "8xa100 is not offered on spot in eu-west1-a; it is offered in us-central1-a"),
])
def test_region_not_offered(catalog, lines, message):
    assert refusal(job(*lines), catalog) == message


# ------------------------------------------------------------------ limit price


@pytest.mark.parametrize("text, gpus, cents", [
    ("$16", 8, 1600),
    ("16.00", 8, 1600),
    ("$16.5", 8, 1650),
    ("16/hr", 8, 1600),
    ("$16.00/instance-hr", 8, 1600),
    ("2.00/gpu-hr", 8, 1600),
    ("$2/GPU-hr", 8, 1600),
    ("2.125/gpu-hour", 8, 1700),
    ("0.333/gpu-hr", 8, 266),  # rounded down: never above what was written
    ("1.50/gpu-hr", 1, 150),
])
def test_limit_price_spellings(text, gpus, cents):
    assert parse_limit_price(text, gpus, "8xh100") == cents


@pytest.mark.parametrize("text, gpus, message", [
    ("abc", 8, "Invalid --limit-price specification: abc: write dollars per instance-hour ($16.00) "
               "or per GPU-hour (2.00/gpu-hr)"),
    ("$-1", 8, "Invalid --limit-price specification: $-1: write dollars per instance-hour ($16.00) "
               "or per GPU-hour (2.00/gpu-hr)"),
    ("2/gpu-day", 8, "Invalid --limit-price specification: 2/gpu-day: write dollars per instance-hour ($16.00) "
                     "or per GPU-hour (2.00/gpu-hr)"),
    ("16.001", 8, "Invalid --limit-price specification: 16.001: not a whole number of cents"),
    ("0", 8, "Invalid --limit-price specification: 0: a limit price must be more than $0"),
    ("2/gpu-hr", 0,
     "--limit-price=2/gpu-hr is per GPU-hour but cpu.32 has no GPUs; write it per instance-hour ($2.00)"),
])
def test_limit_price_refused(text, gpus, message):
    with pytest.raises(SlurmError) as caught:
        parse_limit_price(text, gpus, "cpu.32")
    assert caught.value.message == message


@pytest.mark.parametrize("written, cents", [("$20", 2000), ("2.50/gpu-hr", 2000), ("30.00", 3000)])
def test_limit_price_directive_end_to_end(catalog, written, cents):
    chosen = plan(job("#SBATCH -N 2 --gpus-per-node=h100:8", f"#SFLOW --limit-price={written}"), catalog)
    assert (chosen.limit_price_cents, chosen.limit_source, chosen.limit_price) == (cents, "given", dollars(cents))


def test_limit_price_from_the_environment(catalog):
    chosen = plan(job("#SBATCH --gpus=h100:8", env={"SFLOW_LIMIT_PRICE": "3/gpu-hr"}), catalog)
    assert chosen.limit_price_cents == 2400


@pytest.mark.parametrize("config, cents, source", [
    (None, 2400, "default"),  # $16.00 x 1.5
    ({"headroom": "2"}, 3200, "default"),
    ({"headroom": 1.25}, 2000, "default"),
    ({"max_price_per_gpu_hour": "$2.50"}, 2000, "capped"),  # 8 x $2.50
    ({"max_price_per_gpu_hour": None}, 2400, "default"),
    ({"max_price_per_gpu_hour": "2.00", "headroom": "1"}, 1600, "default"),  # at the cap is not above it
])
def test_default_limit_price(catalog, config, cents, source):
    chosen = plan(job("#SBATCH -N 2 --gpus-per-node=h100:8"), catalog, config)
    assert (chosen.region, chosen.limit_price_cents, chosen.limit_source) == ("us-central1-a", cents, source)


def test_default_limit_rounds_up_to_the_cent():
    types = [_type("it_a", "1xh100", 1, "H100", 24, 225, 2.0)]
    built = Catalog.from_api(types, [_auction("it_a", "r1", 3, "$1.99")])
    assert plan(job("#SBATCH --gpus=1"), built).limit_price_cents == 299  # 298.5 up


def test_market_above_the_cap_is_refused(catalog):
    message = refusal(job("#SBATCH -N 2 --gpus-per-node=h100:8"), catalog, {"max_price_per_gpu_hour": "$1.50"})
    assert message == ("the current spot price of 8xh100 in us-central1-a is $16.00/instance-hr ($2.00/GPU-hr), "
                       "above the cap of $1.50/GPU-hr; give #SFLOW --limit-price to bid anyway, "
                       "or wait for the price to fall")


def test_an_explicit_limit_is_not_capped(catalog):
    request = job("#SBATCH -N 2 --gpus-per-node=h100:8", "#SFLOW --limit-price=$40")
    assert plan(request, catalog, {"max_price_per_gpu_hour": "$1.50"}).limit_price_cents == 4000


def test_limit_below_the_minimum_is_refused(catalog):
    request = job("#SBATCH -N 2 --gpus-per-node=h100:8", "#SFLOW --limit-price=0.50/gpu-hr")
    assert refusal(request, catalog) == (
        "limit price $4.00/instance-hr ($0.50/GPU-hr) is below the minimum of $8.00/instance-hr ($1.00/GPU-hr) "
        "for 8xh100 in us-central1-a; use #SFLOW --limit-price=$8.00 or more")


def test_limit_at_the_minimum_is_accepted(catalog):
    request = job("#SBATCH -N 2 --gpus-per-node=h100:8", "#SFLOW --limit-price=$8")
    assert plan(request, catalog).limit_price_cents == 800
    request = job("#SBATCH -N 2 --gpus-per-node=h100:8", "#SFLOW --limit-price=$7.99")
    assert refusal(request, catalog).startswith("limit price $7.99/instance-hr ($1.00/GPU-hr) is below the minimum")


def test_a_cap_below_the_minimum_is_refused_too(catalog):
    config = {"max_price_per_gpu_hour": "$2.00", "headroom": "1"}
    cheap = Catalog.from_api(INSTANCE_TYPES[2:3], [_auction("it_8xh100", "r1", 4, "$15.00")],
                             {"it_8xh100": {"r1": {"minimum_price_cents": 1700}}})
    assert "is below the minimum of $17.00/instance-hr" in refusal(job("#SBATCH --gpus=h100:8"), cheap, config)


def test_limit_below_the_current_price_waits(catalog):
    chosen = plan(job("#SBATCH -N 2 --gpus-per-node=h100:8", "#SFLOW --limit-price=$10"), catalog)
    assert chosen.notes == ("the current price is above the limit price: the bid waits until the price falls "
                            "to $10.00",)


def test_no_price_known_asks_for_a_limit():
    types = [_type("it_a", "8xh100", 8, "H100", 192, 1800, 20.0)]
    built = Catalog.from_api(types, [{**_auction("it_a", "r1", 3, "$1"), "last_instance_price": None}])
    assert refusal(job("#SBATCH --gpus=8"), built) == \
        "Mithril has no current price for 8xh100 in r1; give #SFLOW --limit-price"
    assert plan(job("#SBATCH --gpus=8", "#SFLOW --limit-price=$9"), built).limit_price_cents == 900


def test_minimum_price_stands_in_for_an_unknown_spot_price():
    types = [_type("it_a", "8xh100", 8, "H100", 192, 1800, 20.0)]
    built = Catalog.from_api(types, [], {"it_a": {"r1": {"minimum_price_cents": 1000, "available_capacity": 2}}})
    assert plan(job("#SBATCH --gpus=8"), built).limit_price_cents == 1500


# ------------------------------------------------------------------ reservations


@pytest.mark.parametrize("time, hours", [
    ("2:00:00", 3), ("3:00:00", 3), ("3:01:00", 4), ("10", 3), ("1-00:00:00", 24), ("14-00:00:00", 336),
])
def test_reservation_window_rounding(catalog, time, hours):
    chosen = plan(job(f"#SBATCH --gpus=h100:8 --time={time}", "#SFLOW --reserved"), catalog)
    assert (chosen.capacity, chosen.reservation_hours) == ("reserved", hours)


@pytest.mark.parametrize("lines, message", [
    (["#SBATCH --gpus=h100:8 --time=14-00:01:00", "#SFLOW --reserved"],
     "--time=14-00:01:00 is longer than a Mithril reservation can be (2 weeks); use --time=14-00:00:00 or less"),
    (["#SBATCH --gpus=h100:8", "#SFLOW --reserved"],
     "a Mithril reservation needs a time limit: give --time (3 hours to 2 weeks)"),
    (["#SBATCH --gpus=h100:8 --time=UNLIMITED", "#SFLOW --reserved"],
     "a Mithril reservation needs a time limit: give --time (3 hours to 2 weeks)"),
])
def test_reservation_window_refused(catalog, lines, message):
    assert refusal(job(*lines), catalog) == message


def test_reservation_hours_directly():
    assert [reservation_hours(m) for m in (1, 180, 181, 20160)] == [3, 3, 4, 336]


def test_reservation_quote_and_region(catalog):
    chosen = plan(job("#SBATCH -N 2 --gpus-per-node=h100:8 -t 2:00:00", "#SFLOW --reserved"), catalog)
    # The lowest reserved price wins, whatever the spot capacity.
    assert (chosen.region, chosen.reserved_price_cents, chosen.reservation_cost_cents) == ("eu-west1-a", 1900, 11400)
    assert (chosen.limit_price_cents, chosen.limit_source) == (1900, "quote")
    assert chosen.max_cost_cents is None


def test_reserved_partition(catalog):
    request = job("#SBATCH -p h100 --gpus=8 -t 4:00:00")
    assert plan(request, catalog).capacity == "spot"
    chosen = plan(request, catalog, {"reserved_partitions": ["h100"]})
    assert (chosen.capacity, chosen.reservation_hours) == ("reserved", 4)


def test_reserved_with_a_limit_price(catalog):
    request = job("#SBATCH --gpus=h100:8 -t 3:00:00", "#SFLOW --reserved --limit-price=$18 --region=us-east1-b")
    assert refusal(request, catalog) == (
        "the reserved price of 8xh100 in us-east1-b is $24.00/instance-hr ($3.00/GPU-hr), above the limit price "
        "$18.00/instance-hr ($2.25/GPU-hr); raise #SFLOW --limit-price or use spot")
    request = job("#SBATCH --gpus=h100:8 -t 3:00:00", "#SFLOW --reserved --limit-price=$25 --region=us-east1-b")
    assert plan(request, catalog).limit_price_cents == 2500


def test_reserved_price_above_the_cap(catalog):
    message = refusal(job("#SBATCH --gpus=h100:8 -t 3:00:00", "#SFLOW --reserved"), catalog,
                      {"max_price_per_gpu_hour": "$2"})
    assert message.startswith("the reserved price of 8xh100 in eu-west1-a is $19.00/instance-hr ($2.38/GPU-hr), "
                              "above the cap of $2.00/GPU-hr")


SLOT_START = datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()


def _slots(region_quantities):
    return {"it_8xh100": {region: [{"start_time": "2030-01-01T00:00:00Z", "end_time": "2030-01-02T00:00:00Z",
                                    "quantity": q}] for region, q in region_quantities.items()}}


def test_reservation_slots_choose_the_region():
    built = Catalog.from_api(INSTANCE_TYPES, AUCTIONS, PRICING, _slots({"eu-west1-a": 1, "us-central1-a": 4}))
    request = job("#SBATCH -N 2 --gpus-per-node=h100:8 -t 5:00:00", "#SFLOW --reserved")
    chosen = plan(request, built, now=SLOT_START + 3600)
    assert (chosen.region, chosen.reservation_start) == ("us-central1-a", SLOT_START + 3600)
    assert plan(request, built).reservation_start == SLOT_START


def test_reservation_slots_refuse_an_explicit_region():
    built = Catalog.from_api(INSTANCE_TYPES, AUCTIONS, PRICING, _slots({"eu-west1-a": 1}))
    request = job("#SBATCH -N 2 --gpus-per-node=h100:8 -t 5:00:00", "#SFLOW --reserved --region=eu-west1-a")
    assert refusal(request, built) == ("no reservation of 2 x 8xh100 for 5 hours is available in eu-west1-a; "
                                       "at most 1 at a time; use fewer nodes or spot")


def test_reservation_slot_too_short_for_the_window():
    built = Catalog.from_api(INSTANCE_TYPES, AUCTIONS, PRICING, _slots({"eu-west1-a": 4}))
    request = job("#SBATCH --gpus=h100:8 -t 5:00:00", "#SFLOW --reserved --region=eu-west1-a")
    assert plan(request, built, now=SLOT_START + 18 * 3600).reservation_hours == 5
    with pytest.raises(SlurmError):
        plan(request, built, now=SLOT_START + 20 * 3600)


# ------------------------------------------------------------------ cost and the printed plan


@pytest.mark.parametrize("time, count, at_most, about", [
    ("2:00:00", 2, 9600, 6400),  # $24 x 2 x 2 h; $16 x 2 x 2 h
    ("90", 2, 7200, 4800),
    ("1-00:00:00", 1, 57600, 38400),
    ("7", 1, 280, 187),  # $24 x 7/60 = $2.80; $16 x 7/60 = $1.8667
    ("1", 1, 40, 27),  # 40 exactly; 26.67 to the nearest cent
])
def test_cost_estimate(catalog, time, count, at_most, about):
    request = job(f"#SBATCH -N {count} --gpus-per-node=h100:8 -t {time}", "#SFLOW --region=us-central1-a")
    chosen = plan(request, catalog)
    assert (chosen.max_cost_cents, chosen.current_cost_cents) == (at_most, about)


def test_cost_bound_rounds_up():
    types = [_type("it_a", "1xh100", 1, "H100", 24, 225, 2.0)]
    built = Catalog.from_api(types, [_auction("it_a", "r1", 3, "$0.40")])
    chosen = plan(job("#SBATCH --gpus=1 -t 1", "#SFLOW --limit-price=$0.70"), built)
    assert (chosen.max_cost_cents, chosen.current_cost_cents) == (2, 1)  # 1.17 up; 0.67 to the nearest


def test_format_plan_spot(catalog):
    chosen = plan(job("#SBATCH -N 2 --gpus-per-node=h100:8 --time=2:00:00"), catalog)
    assert format_plan(chosen) == (
        "Mithril plan: 2 x 8xh100 in us-central1-a (spot)\n"
        "  limit price: $24.00/instance-hr ($3.00/GPU-hr)\n"
        "  current spot price: $16.00/instance-hr ($2.00/GPU-hr)\n"
        "  time limit 02:00:00: at most $96.00, about $64.00 at the current price")


def test_format_plan_without_gpus_or_time_limit(catalog):
    chosen = plan(job("#SBATCH -c 4"), catalog)
    assert format_plan(chosen) == (
        "Mithril plan: 1 x cpu.32 in us-central1-a (spot)\n"
        "  limit price: $1.20/instance-hr\n"
        "  current spot price: $0.80/instance-hr\n"
        "  no time limit: at most $1.20 per hour")


def test_format_plan_with_notes(catalog):
    chosen = plan(job("#SBATCH --gpus=h100:8 -t 1-00:00:00", "#SFLOW --limit-price=$10"), catalog,
                  {"max_price_per_gpu_hour": "$1.75"})
    assert format_plan(chosen) == (
        "Mithril plan: 1 x 8xh100 in us-east1-b (spot)\n"
        "  limit price: $10.00/instance-hr ($1.25/GPU-hr)\n"
        "  current spot price: $12.00/instance-hr ($1.50/GPU-hr)\n"
        "  time limit 1-00:00:00: at most $240.00, about $288.00 at the current price\n"
        "  note: the current price is above the limit price: the bid waits until the price falls to $10.00")


def test_format_plan_capped(catalog):
    chosen = plan(job("#SBATCH --gpus=h100:8 -t 1:00:00"), catalog, {"max_price_per_gpu_hour": "$1.75"})
    assert format_plan(chosen).splitlines()[1:] == [
        "  limit price: $14.00/instance-hr ($1.75/GPU-hr)",
        "  current spot price: $12.00/instance-hr ($1.50/GPU-hr)",
        "  time limit 01:00:00: at most $14.00, about $12.00 at the current price",
        "  note: limit price capped at $1.75/GPU-hr",
    ]


def test_format_plan_reserved(catalog):
    chosen = plan(job("#SBATCH -N 2 --gpus-per-node=h100:8 -t 2:00:00", "#SFLOW --reserved"), catalog)
    assert format_plan(chosen) == (
        "Mithril plan: 2 x 8xh100 in eu-west1-a (reserved)\n"
        "  reservation: 3 hours as soon as it is placed (time limit 02:00:00)\n"
        "  reserved price: $19.00/instance-hr ($2.38/GPU-hr), $114.00 for the reservation\n"
        "  current spot price: $18.00/instance-hr ($2.25/GPU-hr)")


def test_format_plan_reserved_in_a_slot():
    built = Catalog.from_api(INSTANCE_TYPES, AUCTIONS, PRICING, _slots({"us-central1-a": 2}))
    request = job("#SBATCH -N 2 --gpus-per-node=h100:8 -t 3:00:00", "#SFLOW --reserved --limit-price=2.75/gpu-hr")
    lines = format_plan(plan(request, built)).splitlines()
    assert lines[1] == "  reservation: 3 hours from 2030-01-01 00:00 UTC (time limit 03:00:00)"
    assert lines[3] == "  limit price: $22.00/instance-hr ($2.75/GPU-hr)"


def test_plan_to_json(catalog):
    chosen = plan(job("#SBATCH -N 2 --gpus-per-node=h100:8 --time=2:00:00"), catalog)
    data = json.loads(chosen.to_json())
    assert {k: data[k] for k in ("instance_type_id", "instance_type", "instance_quantity", "region", "capacity",
                                 "gpus_per_instance", "gpus_total", "limit_price", "limit_price_cents",
                                 "limit_price_per_gpu_hour_cents", "spot_price_cents",
                                 "spot_price_per_gpu_hour_cents", "max_cost_cents", "current_cost_cents")} == {
        "instance_type_id": "it_8xh100", "instance_type": "8xh100", "instance_quantity": 2,
        "region": "us-central1-a", "capacity": "spot", "gpus_per_instance": 8, "gpus_total": 16,
        "limit_price": "$24.00", "limit_price_cents": 2400, "limit_price_per_gpu_hour_cents": 300,
        "spot_price_cents": 1600, "spot_price_per_gpu_hour_cents": 200, "max_cost_cents": 9600,
        "current_cost_cents": 6400,
    }


# ------------------------------------------------------------------ choosing Mithril and the configuration


def _cluster(backend_of_default: str) -> Cluster:
    node = Node("n1", 4, 4000)
    return Cluster("c", (node,), (Partition("debug", ("n1",), default=True, backend=backend_of_default),
                                  Partition("cloud", ("n1",), backend="mithril")))


@pytest.mark.parametrize("lines, default_backend, expected", [
    (["#SFLOW --backend=mithril"], "local", "mithril"),
    (["#SFLOW --backend=local", "#SBATCH -p cloud"], "local", "local"),  # the directive wins
    (["#SBATCH -p cloud"], "local", "mithril"),
    (["#SBATCH -p debug"], "local", "local"),
    ([], "mithril", "mithril"),  # the default partition's backend
    ([], "local", "local"),
    (["#SBATCH -p nosuch"], "mithril", "local"),  # refused by the partition check, not placed
])
def test_the_backend_chosen(lines, default_backend, expected):
    assert chosen_name(job(*lines), _cluster(default_backend)) == expected


def test_a_plan_kept_as_data_is_the_same_plan(catalog):
    made = plan(job("#SBATCH -N 2 --gpus-per-node=h100:8 -t 1:00:00"), catalog)
    assert Plan.from_dict(json.loads(json.dumps(dataclasses.asdict(made)))) == made
    assert Plan.from_dict(made.to_dict()) == made


def test_config_refuses_unknown_settings(catalog):
    with pytest.raises(SlurmError, match="unknown Mithril plan setting: headrom"):
        plan(job("#SBATCH --gpus=1"), catalog, {"headrom": "2"})
    assert PlanConfig.of({"headroom": "1.5"}) == PlanConfig()
    for bad in ("-1", "0", "lots", "nan"):
        with pytest.raises(SlurmError, match="is not a positive number"):
            PlanConfig.of({"headroom": bad})
    with pytest.raises(SlurmError, match="max_price_per_gpu_hour 'cheap' is not a dollar amount"):
        plan(job("#SBATCH --gpus=1"), catalog, {"max_price_per_gpu_hour": "cheap"})


def test_plan_is_pure(catalog):
    request = job("#SBATCH -N 2 --gpus-per-node=h100:8 -t 1:00:00")
    before = request.model_dump()
    assert plan(request, catalog) == plan(request, catalog)
    assert request.model_dump() == before


def test_the_config_file_chooses_when_neither_job_nor_partition_says(tmp_path):
    from sflow.conf import load_cluster

    config = tmp_path / "config.toml"
    config.write_text('[sflow]\nbackend = "mithril"\n')
    chosen = default_name({"SFLOW_CONFIG": str(config)})
    assert chosen == "mithril"
    assert default_name({"SFLOW_CONFIG": str(tmp_path / "none.toml")}) == "local"
    # Read once while the file stays as it is, and again as soon as it changes.
    config.write_text('[sflow]\nbackend = "local"  # changed\n')
    assert default_name({"SFLOW_CONFIG": str(config)}) == "local"
    config.unlink()
    assert default_name({"SFLOW_CONFIG": str(config)}) == "local"
    config.write_text('[sflow]\nbackend = "mithril"\n')
    conf = tmp_path / "slurm.conf"
    conf.write_text("NodeName=n1 CPUs=4\nPartitionName=debug Nodes=n1 Default=YES\n"
                    "PartitionName=here Nodes=n1 Backend=local\n")
    cluster = load_cluster({"SFLOW_CONF": str(conf)})
    assert chosen_name(job(), cluster, chosen) == "mithril"  # the partition says nothing
    assert chosen_name(job("#SBATCH -p here"), cluster, chosen) == "local"  # Backend=local is said
    assert chosen_name(job("#SFLOW --backend=local"), cluster, chosen) == "local"  # the job says
