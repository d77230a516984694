"""Every SLURM command the burst service runs, in one class: tests hand the service a recording fake.

Each argument is one argv word (no shell): a reason with spaces needs no quoting.
A failed command raises ``SlurmCommandFailed`` with its stderr's first line.
"""

from __future__ import annotations

import os
import re
import subprocess

from sflow.burst.settings import DEFAULT_SLURM_BIN

TIMEOUT = 60.0  # slurmctld answers in milliseconds; a busy one in seconds
_SFLOW_LIMIT = re.compile(r"^#SFLOW\b.*?--limit-price[= ](\S+)", re.MULTILINE)
_SBATCH_SIGNAL = re.compile(r"^#SBATCH\b.*?--signal[= ](\S+)", re.MULTILINE)


class SlurmCommandFailed(Exception):
    pass


class Slurm:
    """Commands by absolute path: slurmctld starts the service with no PATH to search."""

    def __init__(self, bin_dir: str = DEFAULT_SLURM_BIN, scontrol: str = ""):
        self.bin_dir = bin_dir or DEFAULT_SLURM_BIN
        self.scontrol_path = scontrol or self._path("scontrol")

    def _path(self, program: str) -> str:
        return os.path.join(self.bin_dir, program)

    def _run(self, argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SlurmCommandFailed(f"{argv[0]}: {err}") from None
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
            raise SlurmCommandFailed(f"{' '.join(argv[:3])}: {first}")
        return done.stdout

    # ------------------------------------------------------------ what the service asks

    def update_node(self, nodes: list[str], **fields: str) -> None:
        """``scontrol update NodeName=a,b State=DOWN Reason=...``."""
        self._run([self.scontrol_path, "update", f"NodeName={','.join(nodes)}",
                   *(f"{key}={value}" for key, value in fields.items())])

    def update_job(self, job_id: int, **fields: str) -> None:
        self._run([self.scontrol_path, "update", f"JobId={job_id}",
                   *(f"{key}={value}" for key, value in fields.items())])

    def set_admin_comment(self, job_id: int, text: str) -> None:
        """The job's AdminComment: slurmctld's while it knows the job as not finished; once it has
        finished slurmctld refuses, and the accounting record is changed instead (sacctmgr(1): the
        comments of a job are what may change after its completion)."""
        try:
            self.update_job(job_id, AdminComment=text)
        except SlurmCommandFailed:
            self._run([self._path("sacctmgr"), "-i", "modify", "job", "where", f"JobID={job_id}", "set",
                       f"AdminComment={text}"])

    def requeue(self, job_id: int) -> None:
        self._run([self.scontrol_path, "requeue", str(job_id)])

    def signal(self, job_id: int, signal: str = "TERM", batch_only: bool = False) -> None:
        """The job's own --signal (its batch shell alone with ``B:``), else TERM, to every step."""
        self._run([self._path("scancel"), f"--signal={signal}", "--batch" if batch_only else "--full", str(job_id)])

    def jobs_on(self, nodes: list[str]) -> list[int]:
        """The jobs running on any of ``nodes``."""
        try:
            text = self._run([self._path("squeue"), "-h", "-o", "%A", "-t", "RUNNING,COMPLETING,CONFIGURING",
                              "-w", ",".join(nodes)])
        except SlurmCommandFailed:
            return []
        return sorted({int(word) for word in text.split() if word.isdigit()})

    def batch_script(self, job_id: int) -> str | None:
        try:
            return self._run([self.scontrol_path, "write", "batch_script", str(job_id), "-"])
        except SlurmCommandFailed:  # an interactive job has none; a finished one is gone
            return None

    def show_job(self, job_id: int) -> dict[str, str]:
        """``scontrol show job -o``'s KEY=VALUE words; {} for a job slurmctld no longer knows."""
        try:
            text = self._run([self.scontrol_path, "show", "job", "-o", str(job_id)])
        except SlurmCommandFailed:
            return {}
        return parse_show(text)


def parse_show(text: str) -> dict[str, str]:
    """KEY=VALUE words of one ``-o`` line (values without spaces; the ones read here have none)."""
    fields = {}
    for word in text.split():
        key, equals, value = word.partition("=")
        if equals and key not in fields:
            fields[key] = value
    return fields


def limit_price_of(script: str | None) -> str | None:
    """``#SFLOW --limit-price X``'s X in a batch script."""
    found = _SFLOW_LIMIT.search(script or "")
    return found.group(1).strip("'\"") if found else None


def signal_of(script: str | None) -> tuple[str, bool]:
    """The job's ``--signal=[{R|B}:]SIG[@TIME]``: (signal name or number, batch shell only); TERM by default."""
    found = _SBATCH_SIGNAL.search(script or "")
    if not found:
        return "TERM", False
    text = found.group(1).strip("'\"").split("@")[0]
    flags, colon, sig = text.partition(":")
    if not colon:
        flags, sig = "", text
    sig = sig.upper().removeprefix("SIG") or "TERM"
    return sig, "B" in flags.upper()


__all__ = ["Slurm", "SlurmCommandFailed", "limit_price_of", "parse_show", "signal_of"]
