"""Read ``scontrol show job -o`` lines into dicts (no dependencies; tests use it too).

Values may hold spaces (``JobName=a b``, ``Comment=...``), so a line is cut
only where one of scontrol's own keys begins.
"""

from __future__ import annotations

import re

KEYS = (
    "JobId JobName UserId GroupId MCS_label Priority Nice Account QOS JobState Reason Dependency "
    "Requeue Restarts BatchFlag Reboot ExitCode DerivedExitCode RunTime TimeLimit TimeMin SubmitTime "
    "EligibleTime AccrueTime StartTime EndTime Deadline PreemptEligibleTime PreemptTime SuspendTime "
    "SecsPreSuspend LastSchedEval Scheduler Partition AllocNode:Sid ReqNodeList ExcNodeList NodeList "
    "BatchHost NumNodes NumCPUs NumTasks CPUs/Task ReqB:S:C:T TRES Socks/Node NtasksPerN:B:S:C "
    "CoreSpec MinCPUsNode MinMemoryNode MinMemoryCPU MinTmpDiskNode Features DelayBoot OverSubscribe "
    "Contiguous Licenses Network Command WorkDir Comment StdErr StdIn StdOut Power TresPerNode "
    "TresPerJob TresPerTask TresPerSocket CpusPerTres MemPerTres TresBind TresFreq NtasksPerTRES MailUser MailType "
    "ArrayJobId ArrayTaskId ArrayTaskThrottle Switches Reservation KillOInInvalidDependent Prefer "
    "Partition NodeList(Reason) JOB_GRES Nodes CPU_IDs Mem GRES"
).split()

_BOUNDARY = re.compile(r"(?:^| )(" + "|".join(re.escape(k) for k in sorted(set(KEYS), key=len, reverse=True)) + r")=")


def parse_show_line(line: str) -> dict[str, str]:
    """``JobId=1 JobName=a b ...`` -> {"JobId": "1", "JobName": "a b", ...}."""
    line = line.rstrip("\n")
    marks = [(m.start(1), m.end(), m.group(1)) for m in _BOUNDARY.finditer(line)]
    out: dict[str, str] = {}
    for i, (_, value_start, key) in enumerate(marks):
        end = marks[i + 1][0] - 1 if i + 1 < len(marks) else len(line)
        out[key] = line[value_start:end].rstrip(" ")
    return out
