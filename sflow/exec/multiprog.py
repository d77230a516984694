"""srun --multi-prog: a configuration file naming each task's program (srun(1), MULTIPLE
PROGRAM CONFIGURATION). Lines are ``<ranks> <program> [args...]``; ``#`` in column one is a
comment, a trailing backslash continues a line, ``*`` as the ranks of the last line means
every task not named, ``%t`` is the task's rank and ``%o`` its offset within the line."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from sflow.errors import SlurmError


@dataclass
class ProgramLine:
    ranks: list[int] | None  # None: every task no other line names
    words: list[str]
    path: str = ""  # the configuration file, for its errors


def _lines(text: str) -> list[str]:
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return [line for line in out if line.strip()]


def _ranks(text: str, path: str) -> list[int]:
    ranks = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        if not low.isdecimal() or (high and not high.isdecimal()):
            raise SlurmError(f"Configuration file {path} invalid, invalid task rank {part!s}", 255)
        ranks += list(range(int(low), int(high or low) + 1))
    return ranks


def read_config(path: str) -> list[ProgramLine]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            text = handle.read()
    except OSError:
        raise SlurmError(f"Could not open multi_prog config file {path}", 1) from None
    programs = []
    for line in _lines(text):
        try:
            words = shlex.split(line)
        except ValueError:
            raise SlurmError(f"Configuration file {path} invalid, unbalanced quotes", 1) from None
        if len(words) < 2:
            raise SlurmError(f"Configuration file {path} invalid, no executable program specified", 1)
        ranks = None if words[0] == "*" else _ranks(words[0], path)
        programs.append(ProgramLine(ranks, words[1:], path))
    return programs


def argv_for(programs: list[ProgramLine], rank: int, extra: list[str]) -> list[str] | None:
    """The argv of task ``rank`` (the config's words, %t and %o filled in, then ``extra``)."""
    for program in programs:
        if program.ranks is None:
            offset = rank
        elif rank in program.ranks:
            offset = program.ranks.index(rank)
        else:
            continue
        words = [w.replace("%t", str(rank)).replace("%o", str(offset)) for w in program.words]
        return words + list(extra)
    return None


def check_covered(programs: list[ProgramLine], ntasks: int) -> None:
    for rank in range(ntasks):
        if argv_for(programs, rank, []) is None:
            path = programs[0].path if programs else ""
            raise SlurmError(f"Configuration file {path} invalid, no record for task id {rank}", 1)
