"""Batch scripts: the shebang check and the ``#SBATCH``/``#SFLOW`` directive header.

sbatch reads directives only up to the first line that is neither blank nor a
comment; later ``#SBATCH`` lines are inert shell comments. The prefix must
stand at the very start of the line (``##SBATCH``, ``# SBATCH`` and an
indented ``#SBATCH`` are plain comments).
"""

from __future__ import annotations

from dataclasses import dataclass

from sflow.errors import SlurmError

SBATCH_PREFIX = "#SBATCH"
SFLOW_PREFIX = "#SFLOW"

WRAP_HEADER = "#!/bin/sh\n# This script was created by sbatch --wrap.\n\n"


@dataclass(frozen=True)
class Directive:
    """One directive line: its 1-based line number, prefix and shell-split words."""

    line: int
    prefix: str
    words: tuple[str, ...]


def wrap_script(command: str) -> str:
    """The script sbatch writes for ``--wrap=COMMAND``."""
    return f"{WRAP_HEADER}{command}\n"


def check_script(text: str) -> None:
    """Reject what sbatch refuses to submit as a batch script."""
    if not text:
        raise SlurmError("Batch script is empty!")
    if "\0" in text:
        raise SlurmError("The SLURM controller does not allow scripts that contain a NULL character '\\0'.")
    if not text.startswith("#!"):
        raise SlurmError(
            "This does not look like a batch script.  The first\n"
            "line must start with #! followed by the path to an interpreter.\n"
            "For instance: #!/bin/sh"
        )
    if "\r\n" in text:
        raise SlurmError(
            "Batch script contains DOS line breaks (\\r\\n)\n"
            "instead of expected UNIX line breaks (\\n)."
        )


def _is_header_line(stripped: str) -> bool:
    return stripped == "" or stripped.startswith("#")


def directives(text: str, prefixes: tuple[str, ...] = (SBATCH_PREFIX, SFLOW_PREFIX)) -> list[Directive]:
    """The directive lines of a batch script's header, in order, with their words."""
    found: list[Directive] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if number == 1 and line.startswith("#!"):
            continue
        if not _is_header_line(line.strip()):
            break
        for prefix in prefixes:
            if line.startswith(prefix):
                # sbatch needs no blank after the prefix: "#SBATCH--time=5" counts.
                rest = line[len(prefix):]
                found.append(Directive(number, prefix, split_words(rest, number)))
                break
    return found


def split_words(text: str, line: int | None = None) -> tuple[str, ...]:
    """Split a directive's argument text into words, honouring quotes and comments."""
    # deferred: lark costs ~40 ms, and srun imports this module for the request's option values only
    from sflow.slurm.grammars import LarkError, parser

    try:
        tree = parser("directive").parse(text)
    except LarkError:
        raise SlurmError(f"Unmatched quotation mark in directive: {text.strip()}", line=line) from None
    words = []
    for node in tree.children:
        if getattr(node, "data", None) != "word":
            continue
        pieces = []
        for piece in node.children:
            token = piece.children[0]
            pieces.append(token[1:-1] if piece.data in ("squoted", "dquoted") else str(token))
        words.append("".join(pieces))
    return tuple(words)
