"""A Mithril job sees the GPUs it asked for, not every GPU of its instance, and a short job's cost
shows as billed (a fraction of a cent), not as $0.00."""

from __future__ import annotations

import re

from mithril_harness import REGION, site_fixture, slurm_conf
from sflow.views.costs import billed

KEY = "fkey_gpus_5ecret_value_17"
site = site_fixture("mithril-gpus", slurm_conf("gpus"), KEY)

SHOW = 'echo "$1 cuda=${CUDA_VISIBLE_DEVICES-unset} on_node=${SLURM_GPUS_ON_NODE-unset} job=${SLURM_JOB_GPUS-unset}"'


def _run(site, options: str, out: str) -> tuple[int, str]:
    job_id = site.sbatch(f"""#!/bin/bash
#SBATCH -p gpu {options} -t 10 -o {out}
#SFLOW --region={REGION} --instance-type=4xa100
show() {{ {SHOW}; }}
show batch
srun bash -c '{SHOW.replace("$1", "step")}'
""", name=f"{out}.sh")
    rec = site.wait(job_id, lambda r: r.state not in ("PENDING", "RUNNING", "COMPLETING"), what="ended")
    text = site.read(out)
    assert rec.state == "COMPLETED", text + site.log()
    return job_id, text


def test_a_gres_job_on_a_bigger_instance_sees_only_its_gpus(site):
    job_id, text = _run(site, "--gres=gpu:2", "two.out")
    assert text.splitlines() == ["batch cuda=0,1 on_node=2 job=0,1", "step cuda=0,1 on_node=2 job=0,1"], text

    # The instance is the job's alone; a short run costs a fraction of a cent, shown as billed.
    (row,) = site.settled(job_id)
    rec = site.job(job_id)
    assert 0 < rec.cost_cents == row.cost_cents
    shown = site.run("sacct", "-j", str(job_id), "-n", "-X", "-P", "-o", "Cost").stdout.strip()
    assert shown == billed(rec.cost_cents) and shown != "$0.00", shown
    assert re.fullmatch(r"\$\d+\.\d{2,6}", shown), shown
    assert billed(rec.cost_cents) in site.run("flow", "status", str(job_id)).stdout


def test_exclusive_or_a_named_instance_type_gets_every_gpu(site):
    _, text = _run(site, "--exclusive", "all.out")
    assert text.splitlines()[0] == "batch cuda=0,1,2,3 on_node=4 job=0,1,2,3", text
    _, text = _run(site, "--gpus=3", "three.out")
    assert text.splitlines()[0] == "batch cuda=0,1,2 on_node=3 job=0,1,2", text
    # No GPUs asked, but the instance type named: that machine was chosen for its GPUs.
    _, text = _run(site, "-n 1", "named.out")
    assert text.splitlines()[0] == "batch cuda=0,1,2,3 on_node=4 job=0,1,2,3", text
