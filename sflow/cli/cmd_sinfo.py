"""``sinfo``: partitions and nodes, with what running jobs hold."""

from __future__ import annotations

import os
import sys
import time

from sflow.cli.common import reader
from sflow.conf import load_cluster
from sflow.views.cluster_show import node_states
from sflow.views.sinfo import parse_interval, sinfo_main


def main(argv: list[str]) -> int:
    cluster = load_cluster()
    period = parse_interval(argv, os.environ)
    first = True
    while True:
        states = node_states(reader().allocated_nodes(), cluster)
        out, err, code = sinfo_main(argv, cluster, states, env=os.environ, dump=first)
        sys.stdout.write(out)
        sys.stderr.write(err)
        if not period or code:
            return code
        # --iterate: the report again every so many seconds, a blank line after each, until killed
        sys.stdout.write("\n")
        sys.stdout.flush()
        first = False
        time.sleep(period)
