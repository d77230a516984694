#!/usr/bin/env python3
"""Record how real SLURM 22.05's sbatch reads integer option values (compat/cases/counts.toml).

    python3 compat/record_counts.py [--only NAME ...]

Every option of the table is tried with every value of its list (zero, signs, blanks,
trailing junk, the 2^31, 2^32, 2^63 and 2^64 boundaries) as ``sbatch --hold --OPTION=VALUE
--wrap true``; the job is read back with ``scontrol show job -o`` and cancelled, exactly as
compat/record_golden.py does for golden/sbatch.json. Results go to compat/golden/counts.json.
"""

from __future__ import annotations

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import record_golden  # noqa: E402
from record_golden import record  # noqa: E402
from recorder import load_toml, record_main  # noqa: E402

CASES = os.path.join(HERE, "cases", "counts.toml")
OUT = os.path.join(HERE, "golden", "counts.json")
record_golden.WORK = "/tmp/sflow-golden/counts"  # its own directory: other recorders may run beside it


def case_name(form: str, value: str) -> str:
    """``--nodes={v}`` with `` 3`` -> ``nodes=_3``: readable, unique, no blanks."""
    option = re.sub(r"^-+", "", form.replace("{v}", ""))
    return option + (value.replace(" ", "_") if value else "(empty)")


def cases() -> list[dict]:
    grid = load_toml(CASES)
    out = []
    for option in grid["option"]:
        for value in grid["values"] + option.get("more", []):
            out.append({"name": case_name(option["form"], value),
                        "args": [*option.get("with", []), option["form"].replace("{v}", value), "--wrap=true"]})
    return out


def main() -> None:
    record_main(__doc__, cases(), OUT, record, lambda result, seconds: f"exit {result['exit_code']}")


if __name__ == "__main__":
    main()
