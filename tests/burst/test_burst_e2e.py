"""Bursting end to end: a real SLURM 22.05 job on cloud nodes that sflow's service bid for on the
Mithril emulator and booted over SSH on the emulated instances."""

from __future__ import annotations

import os
import re
import time

from .real_chain import Timeline


def _sacct(slurm, job_id: str, field: str) -> str:
    return slurm.run("sacct", "-n", "-X", "-P", "-j", job_id, "-o", field).stdout.strip()


def _registered(slurm, name: str) -> bool:
    """The node's slurmd has registered: sinfo's state no longer powered down (~), powering up (#)
    or not responding (*); ``scontrol show node`` may already say ALLOCATED+CLOUD before that."""
    state = slurm.node_states()[name][0]
    return not any(flag in state for flag in "~#*%")


def test_a_two_node_job_runs_on_instances_won_in_one_bid_and_they_are_given_back(burst_site):
    site = burst_site()
    slurm = site.slurm
    assert {n: s for n, (s, _) in slurm.node_states().items() if n != "base1"} == {"cloud1": "idle~", "cloud2": "idle~"}

    t = {"sbatch": time.monotonic()}
    job_id = slurm.run("sbatch", "--parsable", "-p", "cloud", "-N2", "--ntasks-per-node=2", "-o", "job-%j.out",
                       "--wrap", 'srun bash -c "echo \\$SLURM_PROCID \\$(hostname)"', check=True).stdout.strip()
    output = os.path.join(slurm.dir, f"job-{job_id}.out")
    site.wait(site.requests, 60, "slurmctld to call the ResumeProgram")
    t["resume_program"] = time.monotonic()
    site.wait(lambda: any(b.status != "Open" for b in site.bids()), 60, "the bid to be won")
    t["allocated"] = time.monotonic()
    site.wait(lambda: all(i.status == "STATUS_RUNNING" for b in site.bids() for i in site.instances(b))
              and site.bids() and site.instances(site.bids()[0]), 60, "the instances to run")
    t["instances_running"] = time.monotonic()
    site.wait(lambda: all(_registered(slurm, n) for n in slurm.cloud_nodes), 60, "the nodes to register")
    t["registered"] = time.monotonic()
    site.wait(lambda: slurm.job(job_id).get("JobState") in ("RUNNING", "COMPLETING", "COMPLETED"), 60,
              "the job to run")
    t["running"] = time.monotonic()
    site.wait(lambda: os.path.exists(output) and open(output).read().strip(), 60, "the job's first line")
    t["first_line"] = time.monotonic()
    site.wait(lambda: _sacct(slurm, job_id, "State") == "COMPLETED", 60, "the job to be COMPLETED in sacct")

    # One all-or-nothing bid of two instances for the job.
    (bid,) = site.bids()
    assert bid.quantity == 2
    (request,) = site.requests()
    assert (request.kind, request.hostlist) == ("resume", "cloud[1-2]")
    # Each node was booted over SSH on an instance of that bid.
    booted = {site.node_booted_on(site.hosts.base_dir + "/" + fid): fid for fid in bid.instances}
    assert sorted(booted) == ["cloud1", "cloud2"], booted
    lines = open(output).read().split("\n")
    ranks = sorted(tuple(line.split()) for line in lines if line)
    assert ranks == [("0", "cloud1"), ("1", "cloud1"), ("2", "cloud2"), ("3", "cloud2")]

    # SuspendTime after the job, the nodes are powered down and the bid is given back.
    site.wait(lambda: all(slurm.node_states()[n][0] == "idle~" for n in slurm.cloud_nodes), 60,
              "the cloud nodes to power down")
    t["powered_down"] = time.monotonic()
    site.wait(lambda: not site.live_bids(), 30, "the bid to be given back")
    assert [r.kind for r in site.requests()] == ["resume", "suspend"]
    # The cost as Mithril billed the bid, settled after the job ended: in the job's accounting record.
    ledger = site.emu.ledger()
    billed = f"mithril_cost=${sum(ledger[b.fid]['cost_cents'] for b in site.bids()) / 100:.2f}"
    cost = site.wait(lambda: re.search(re.escape(billed), _sacct(slurm, job_id, "AdminComment")), 60,
                     f"the job's billed cost ({billed}) in sacct's AdminComment")
    print(f"\njob {job_id}: {cost.group(0)}; sacct AdminComment {_sacct(slurm, job_id, 'AdminComment')!r}, "
          f"scontrol AdminComment {slurm.job(job_id).get('AdminComment')!r}")
    steps = list(t.items())
    print("  ".join(f"{b} +{tb - ta:.1f}s" for (a, ta), (b, tb) in zip(steps, steps[1:])))


def test_a_limit_below_the_market_keeps_the_job_waiting_and_leaves_nothing_behind(burst_site):
    site = burst_site(limit_price="$10.00/hr")
    slurm = site.slurm
    site.demand("$30.00", 32)  # every 8xh100 of the region is taken above the partition's limit
    job_id = slurm.run("sbatch", "--parsable", "-p", "cloud", "-N2", "--wrap", "hostname",
                       check=True).stdout.strip()
    site.wait(lambda: site.bids(), 60, "the bid")
    seen = []
    started = time.monotonic()

    def withdrawn():
        seen.append((round(time.monotonic() - started, 1),
                     slurm.run("squeue", "-h", "-j", job_id, "-o", "%T|%R").stdout.strip(),
                     slurm.show_node("cloud1").get("State"), slurm.show_node("cloud1").get("Reason", "")))
        return site.bids()[0].status != "Open"

    site.wait(withdrawn, site.resume_timeout + 10, "the bid to be withdrawn")
    (bid,) = site.bids()
    (request,) = site.requests()
    assert bid.status == "Terminated"
    # Given back before slurmctld's ResumeTimeout, which never had to call the ResumeFailProgram.
    assert bid.deactivated_at - request.received < site.resume_timeout
    assert seen[0][1].startswith("CONFIGURING|")  # while bidding: slurmctld's own view of a resume
    node = site.wait(lambda: (n := slurm.show_node("cloud1")).get("Reason", "").startswith("BidOpen") and n, 30,
                     "the node's reason")
    assert "below spot" in node["Reason"] or "free" in node["Reason"], node["Reason"]
    job = site.wait(lambda: (j := slurm.run("squeue", "-h", "-j", job_id, "-o", "%T|%R").stdout.strip())
                    .startswith("PENDING|") and j, 30, "the job to wait again")
    print(f"\nwhile bidding: {seen[0]} ... {seen[-1]}\nafter: squeue {job!r}; cloud1 {node.get('State')} "
          f"Reason={node.get('Reason')!r}; sinfo {slurm.node_states()}")
    slurm.run("scancel", job_id, check=True)
    site.wait(lambda: slurm.job(job_id).get("JobState") == "CANCELLED", 30, "the job to be cancelled")
    assert not site.live_bids()
    assert len(site.bids()) == 1


PREEMPTIBLE_JOB = """#!/bin/bash
#SBATCH --signal=B:USR1@30
# The service reads the signal from the script: SLURM 22.05 shows a command line's --signal nowhere.
trap 'echo "got USR1 restart=${SLURM_RESTART_COUNT:-0}"; exit 0' USR1
if [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ]; then
    echo "done on $SLURMD_NODENAME"
    exit 0
fi
echo "first run on $SLURMD_NODENAME"
sleep 600 &
wait
"""


def test_a_preempted_job_gets_its_signal_is_requeued_and_runs_again_on_new_instances(burst_site):
    notice = 30.0
    # A requeued job is eligible again cred_expire seconds later (120 by default, slurm.conf(5)).
    site = burst_site(preempt_grace=10, emulator={"notice": notice}, extra_conf="AuthInfo=cred_expire=5\n")
    slurm = site.slurm
    script = os.path.join(slurm.dir, "preemptible.sh")
    with open(script, "w") as handle:
        handle.write(PREEMPTIBLE_JOB)
    # A requeued run truncates the output file again unless it is opened to append.
    job_id = slurm.run("sbatch", "--parsable", "-p", "cloud", "-N1", "--signal=B:USR1@30", "--requeue",
                       "--open-mode=append", "-o", "job-%j.out", script, check=True).stdout.strip()
    output = os.path.join(slurm.dir, f"job-{job_id}.out")

    def read_output() -> str:
        try:
            with open(output) as handle:
                return handle.read()
        except OSError:
            return ""

    def show_job() -> str:
        job = slurm.job(job_id)
        return "|".join(job.get(k, "") for k in ("JobState", "Reason", "Restarts", "NodeList", "BatchHost"))

    slurm_probes = {"nodes": lambda: tuple(sorted((n, *v) for n, v in slurm.node_states().items() if n != "base1")),
                    "job": show_job}
    # The bids and the output are cheap to look at: often enough not to miss a short Preempting.
    local_probes = {"bids": lambda: tuple((b.fid, b.status) for b in site.bids()), "output": read_output}
    with Timeline(slurm_probes) as timeline, Timeline(local_probes, 0.05, origin=timeline.started) as local:
        try:
            site.wait(lambda: "first run" in read_output(), 90, "the job's first run")
            (first,) = site.bids()
            site.demand("$30.00", 32)  # above the partition's limit, for the whole pool
            demanded = timeline.at(time.monotonic())
            site.wait(lambda: "got USR1 restart=0" in read_output(), notice, "the job's USR1 within the notice")
            site.wait(lambda: slurm.job(job_id).get("Restarts") == "1", 30, "the job to be requeued")
            site.wait(lambda: any(b.fid != first.fid for b in site.bids()), 60, "a bid for the job's second run")
            assert next(b for b in site.bids() if b.fid == first.fid).status == "Terminated"
            site.demand("$30.00", 0)  # the other users are gone
            site.wait(lambda: _sacct(slurm, job_id, "State") == "COMPLETED", 90, "the second run to complete")
            site.wait(lambda: all(slurm.node_states()[n][0] == "idle~" for n in slurm.cloud_nodes), 60,
                      "the cloud nodes to power down")
            site.wait(lambda: not site.live_bids(), 30, "every bid to be given back")
        finally:
            print(f"\n{timeline.text()}\n{local.text()}")
    print("sacct -D:\n"
          + slurm.run("sacct", "-j", job_id, "-D", "-X", "-o", "JobID,State,ExitCode,NodeList,Start,End",
                      "-P").stdout)

    assert job_id == slurm.run("sacct", "-n", "-X", "-D", "-P", "-j", job_id, "-o", "JobID").stdout.split()[0]
    assert "got USR1 restart=0" in read_output() and "done on cloud" in read_output()
    # One bid per run, each given back; the first deleted under its notice.
    bids = site.bids()
    assert len(bids) == 2 and all(b.status == "Terminated" for b in bids), bids
    assert first.fid in [b.fid for b in bids]
    signalled = local.first("output", lambda v: "got USR1" in v)
    preempting = local.first("bids", lambda v: (first.fid, "Preempting") in v)
    assert preempting is not None and preempting >= demanded
    assert signalled - preempting < notice
    reason_seen = timeline.first("nodes", lambda v: any("preempted by the Mithril spot market" in r for *_, r in v))
    assert reason_seen is not None, timeline.text()
    requeued = timeline.first("job", lambda v: v.split("|")[2] == "1")
    # The second run may be over before a look sees it RUNNING: its batch script starts when the job
    # leaves CONFIGURING, and it only prints a line.
    running_again = timeline.first("job", lambda v: v.split("|")[0] in ("RUNNING", "COMPLETING", "COMPLETED")
                                   and v.split("|")[2] == "1")
    allocated_again = timeline.first("job", lambda v: v.startswith("CONFIGURING|") and v.split("|")[2] == "1")
    print(f"notice +{preempting:.1f}s -> USR1 in output +{signalled - preempting:.1f}s -> requeued "
          f"+{requeued - preempting:.1f}s -> nodes again +{allocated_again - preempting:.1f}s -> running again "
          f"+{running_again - preempting:.1f}s "
          f"(preemption reason seen at +{reason_seen:.1f}s)")


def _crash_and_restart(burst_site, kill_when, what: str, prepare=None):
    """A 2-node job; the service SIGKILLed once ``kill_when(site)`` holds, started again as a program
    would start it; the job must complete from one bid, and nothing be left bidding."""
    site = burst_site()
    slurm = site.slurm
    after_kill = prepare(site) if prepare else None
    job_id = slurm.run("sbatch", "--parsable", "-p", "cloud", "-N2", "--wrap", "srun hostname",
                       check=True).stdout.strip()
    started = time.monotonic()
    site.wait(lambda: kill_when(site), 60, what)
    killed = site.kill_service()
    at_kill = [(b.fid, b.status) for b in site.bids()], [(r.kind, r.taken is not None) for r in site.requests()]
    if after_kill:
        after_kill()
    site.start_service()
    site.wait(lambda: site.service_pid() not in (None, killed), 30, "the service to start again")
    site.wait(lambda: _sacct(slurm, job_id, "State") == "COMPLETED", 90, "the job to complete")
    done = time.monotonic()
    (bid,) = site.bids()  # the restarted service followed the bid it had, or created it once
    assert bid.quantity == 2
    site.wait(lambda: all(slurm.node_states()[n][0] == "idle~" for n in slurm.cloud_nodes), 60,
              "the cloud nodes to power down")
    site.wait(lambda: not site.live_bids(), 30, "the bid to be given back")
    assert len(site.bids()) == 1
    print(f"\nkilled pid {killed} {what}: bids {at_kill[0]}, requests (kind, taken) {at_kill[1]}; "
          f"job COMPLETED {done - started:.1f}s after sbatch\n{site.service_log()}")


def test_a_service_killed_after_placing_the_bid_follows_it_again_and_bids_once(burst_site):
    _crash_and_restart(burst_site, lambda site: site.bids(), "once the bid is placed")


def test_a_service_killed_before_bidding_bids_once_when_started_again(burst_site):
    # The program has recorded the request and started the service: killed at its first breath.
    _crash_and_restart(burst_site, lambda site: site.service_pid(), "once the service has started")


def test_a_service_killed_while_its_bid_create_is_unanswered_bids_once_when_started_again(burst_site):
    # The create reached Mithril, its answer had not come back: the restarted service sends it again
    # with the same idempotency key and gets the same bid.
    holds = []

    def hold(site):
        holds.append(site.hold_bid_answers())
        return holds[0].release.set

    _crash_and_restart(burst_site, lambda site: holds[0].held.is_set(), "while its create's answer was held", hold)
    # The create was sent again, with the key of the first: Mithril answered with the bid it had.
    print(f"creates' idempotency keys: {holds[0].creates}")
    assert len(holds[0].creates) >= 2 and len(set(holds[0].creates)) == 1, holds[0].creates
