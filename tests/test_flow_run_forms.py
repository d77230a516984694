"""flow run: its warnings, the #SFLOW options on its command line, and a command instead of a script."""

from __future__ import annotations

import os

SCRIPT = "#!/bin/bash\n#SBATCH --mail-type=BEGIN\n#SBATCH --acctg-freq=30\necho hi\n"


def _script(cluster, text: str = SCRIPT, name: str = "job.sh") -> str:
    path = os.path.join(cluster.work, name)
    with open(path, "w") as handle:
        handle.write(text)
    return path


def test_each_ignored_option_warns_once_however_many_places_set_it(cluster):
    path = _script(cluster)
    env_and_line = ["env", "SBATCH_ACCTG_FREQ=5", "flow", "run"]
    for argv in ([*env_and_line, "--dry-run", "--mail-type=END", path], [*env_and_line, "--mail-type=END", path]):
        done = cluster.run(*argv)
        assert done.returncode == 0, done.stderr
        warnings = [line for line in done.stderr.splitlines() if "warning" in line]
        assert warnings == ["sbatch: warning: --mail-type is accepted and ignored: sflow sends no mail",
                            "sbatch: warning: --acctg-freq is accepted and ignored: it has no effect on an sflow cluster"]
