"""Fan-out over SSH: ``hostname`` on N emulated instances, sflow against pdsh.

    python3 benchmarks/bench_fanout.py [--hosts 64] [--runs 9] [--quick]

The instances are sflow's loopback SSH servers (``sflow.mithril.sshhost``),
served from a separate process so that the client being timed has this one
to itself. Timed, as medians of several runs:

- sflow, cold: ``sflow.remote.ssh.run_all`` opening a connection to every
  host, running the command and closing, as pdsh does (in-process, no
  interpreter start-up);
- sflow, warm: the same through ``SshClient``, whose connections stay open
  between calls, as the scheduler keeps them;
- pdsh -R ssh: one OpenSSH client per host, through a generated ssh config
  with each host's port and sflow's key, accept-new host keys into a
  temporary known_hosts, fan-out equal to the host count, the same cipher
  as sflow negotiates.

pdsh comes from Debian's ``pdsh`` package; without it the sflow figures are
reported alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import precompile, summary, time_command  # noqa: E402


def serve(base: str, count: int, public_key: str) -> None:
    """Child process: start the hosts, print their ports as JSON, run until stdin closes."""
    from sflow.mithril.sshhost import HostPool

    with HostPool(base) as pool:
        hosts = [pool.start(f"gpu-{i:03d}", public_key) for i in range(count)]
        print(json.dumps({h.name: h.port for h in hosts}), flush=True)
        sys.stdin.read()


def ensure_pdsh() -> str | None:
    found = shutil.which("pdsh")
    if found or os.geteuid() != 0:
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "pdsh"], capture_output=True)
    return shutil.which("pdsh")


def ssh_config(path: str, ports: dict[str, int], key: str, known_hosts: str) -> list[str]:
    aliases = []
    with open(path, "w") as handle:
        for i, port in enumerate(ports.values()):
            aliases.append(f"h{i}")
            handle.write(f"Host h{i}\n  HostName 127.0.0.1\n  Port {port}\n")
        handle.write(
            f"Host *\n  User ubuntu\n  IdentityFile {key}\n  IdentitiesOnly yes\n  BatchMode yes\n"
            f"  StrictHostKeyChecking accept-new\n  UserKnownHostsFile {known_hosts}\n"
            "  GlobalKnownHostsFile /dev/null\n  ControlMaster no\n  LogLevel ERROR\n"
            # The cipher sflow negotiates, so that both clients cost the emulated servers the same.
            "  Ciphers aes128-gcm@openssh.com,chacha20-poly1305@openssh.com\n"
        )
    return aliases


def check_names(names: list[str], expected: set[str], who: str) -> None:
    if sorted(names) != sorted(expected):
        missing = sorted(expected - set(names))[:5]
        raise SystemExit(f"{who}: got {len(names)} answers, {len(set(names))} distinct; missing e.g. {missing}")


def time_sflow_cold(targets, key, known, expected, runs: int) -> list[float]:
    from sflow.remote.ssh import run_all

    def once() -> float:
        start = time.perf_counter()
        results = asyncio.run(run_all(targets, "hostname", key=key, known_hosts=known))
        elapsed = time.perf_counter() - start
        check_names([r.stdout.decode().strip() for r in results], expected, "sflow")
        return elapsed

    once()  # warm-up: pins the host keys
    return [once() for _ in range(runs)]


def time_sflow_warm(targets, key, known, expected, runs: int) -> list[float]:
    from sflow.remote.client import SshClient

    with SshClient(key=key, known_hosts=known) as client:
        client.run_all(targets, "hostname")  # opens the connections
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            results = client.run_all(targets, "hostname")
            samples.append(time.perf_counter() - start)
            check_names([r.stdout.decode().strip() for r in results], expected, "sflow (warm)")
    return samples


def time_pdsh(pdsh: str, work: str, ports: dict[str, int], key_file: str, expected: set[str], runs: int):
    config = os.path.join(work, "ssh_config")
    aliases = ssh_config(config, ports, key_file, os.path.join(work, "pdsh_known_hosts"))
    argv = [pdsh, "-R", "ssh", "-f", str(len(aliases)), "-w", ",".join(aliases), "hostname"]
    env = {"PDSH_SSH_ARGS": f"-F {config} %h"}
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True)
    names = [line.split(": ", 1)[1] for line in done.stdout.splitlines() if ": " in line]
    if done.returncode != 0 or sorted(names) != sorted(expected):
        raise SystemExit(f"pdsh failed (exit {done.returncode}): {done.stderr.strip()[:500]}")
    return time_command(argv, runs=runs, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="8 hosts, 3 runs")
    parser.add_argument("--serve", nargs=3, metavar=("BASE", "COUNT", "PUBKEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return
    if args.quick:
        args.hosts, args.runs = 8, 3
    precompile()

    work = tempfile.mkdtemp(prefix="sflow-bench-fanout-")
    os.environ["SFLOW_HOME"] = os.path.join(work, "home")
    from sflow.remote.keys import client_key, key_path, public_key
    from sflow.remote.knownhosts import KnownHosts
    from sflow.remote.ssh import Target

    key = client_key()
    server = subprocess.Popen([sys.executable, __file__, "--serve", os.path.join(work, "hosts"), str(args.hosts),
                               public_key()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ports = json.loads(server.stdout.readline())
        expected = set(ports)
        targets = [Target(f"127.0.0.1:{port}", pin=name) for name, port in ports.items()]
        known = KnownHosts()
        print(f"hostname on {args.hosts} loopback SSH hosts, {args.runs} runs each")
        cold = time_sflow_cold(targets, key, known, expected, args.runs)
        print(f"  sflow, new connections   {summary(cold)}")
        warm = time_sflow_warm(targets, key, known, expected, args.runs)
        print(f"  sflow, open connections  {summary(warm)}")
        pdsh = ensure_pdsh()
        if pdsh is None:
            print("  pdsh -R ssh              not available (apt-get install pdsh failed); sflow alone")
        else:
            samples = time_pdsh(pdsh, work, ports, key_path(), expected, args.runs)
            print(f"  pdsh -R ssh              {summary(samples)}")
            ratio = statistics.median(samples) / statistics.median(cold)
            print(f"  pdsh / sflow (new connections): {ratio:.2f}x"
                  f"  ({'sflow faster' if ratio > 1 else 'pdsh faster'})")
    finally:
        server.stdin.close()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
