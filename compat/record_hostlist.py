#!/usr/bin/env python3
"""Record ``scontrol show hostnames`` / ``show hostlist`` for many inputs into golden/hostlist.json.

    python3 compat/record_hostlist.py      (needs SLURM's scontrol; no daemons)
"""

import json
import os
import subprocess

INPUTS = [
    "node1", "node[1-4]", "node[1-3,7]", "node[01-10]", "node[001-003,010]", "n[1-2],m[3-4]",
    "r[1-2]n[1-2]", "node[1-3],node4", "node1,node2,node10", "node01,node02,node3", "node1,node1,node2",
    "n1,n3,n2,n4", "node3,node1,node2", "a,b", "node", "rack1-node[1-2]", "gpu-a100-[1-3]",
    "node[3-1]", "node[1-", "x[0-0]", "x[9-11]", "x[09-11]", "a1,b2,a2,b3,a10", "host.example[1-2]",
    "n[1,3-5,7]", "node[1-2],gpu[1-2],node[3-4]", "c[1-2]-ib", "node[1-2]x[3-4]",
]


def run(*args):
    done = subprocess.run(["/usr/bin/scontrol", "show", *args], capture_output=True, text=True)
    return {"stdout": done.stdout, "stderr": done.stderr, "exit_code": done.returncode}


def main():
    rows = [{"input": text, "hostnames": run("hostnames", text), "hostlist": run("hostlist", text)}
            for text in INPUTS]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "hostlist.json")
    with open(out, "w") as handle:
        json.dump(rows, handle, indent=1)
        handle.write("\n")


if __name__ == "__main__":
    main()
