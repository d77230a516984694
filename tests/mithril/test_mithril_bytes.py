"""A Latin-1 script on Mithril: its name, argument and environment value reach the instance as bytes."""

from __future__ import annotations

import os
import subprocess

from mithril_harness import REGION, site_fixture, slurm_conf

site = site_fixture("mithril-bytes", slurm_conf("bytes"), "fkey_bytes_5ecret_value_42")


def test_latin1_job_runs_byte_exact_on_an_instance(site):
    script = (b"#!/bin/bash\n#SBATCH -p gpu -N 1 --gpus-per-node=h100:8 -t 10 -J caf\xe9 -o out-%j.bin\n"
              b"#SFLOW --region=" + REGION.encode() + b"\n"
              b"printf '%s|%s|%s|\\xe9\\n' \"$1\" \"$X\" \"$SLURM_JOB_NAME\"\n")
    with open(os.path.join(site.work, "job.sh"), "wb") as handle:
        handle.write(script)
    env = {os.fsencode(k): os.fsencode(v) for k, v in site.env.items()}
    env[b"X"] = b"v\xff"
    done = subprocess.run([b"sbatch", b"--parsable", b"job.sh", b"a\xe9"], cwd=site.work, env=env,
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and b"internal error" not in done.stderr, done.stderr
    job_id = int(done.stdout)
    rec = site.wait(job_id, lambda r: r.state not in ("PENDING", "RUNNING", "COMPLETING"), what="ended")
    with open(os.path.join(site.work, f"out-{job_id}.bin"), "rb") as handle:
        out = handle.read()
    assert (rec.state, rec.backend) == ("COMPLETED", "mithril"), out + site.log().encode()
    assert out == b"a\xe9|v\xff|caf\xe9|\xe9\n"
