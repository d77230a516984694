"""The one exception tree: every error sflow reports to a user is a value here.

Errors are raised in the language and rendered once, at the CLI edge, with
SLURM's wording and exit code (see ``render``).
"""

from __future__ import annotations


class SflowError(Exception):
    """Base of every error sflow reports to a user."""


class SlurmError(SflowError):
    """An error as a SLURM command reports it.

    Rendered as ``<command>: error: <message>`` and exits with ``exit_code``.
    ``line``/``source`` locate the ``#SBATCH`` directive it came from; ``preface`` lines are
    printed bare before it (SLURM's time parser says where it stopped that way).
    """

    def __init__(
        self,
        message: str,
        exit_code: int = 1,
        *,
        line: int | None = None,
        source: str | None = None,
        preface: tuple[str, ...] = (),
    ):
        super().__init__(message)
        self.preface = preface
        self.message = message
        self.exit_code = exit_code
        self.line = line
        self.source = source


class UsageError(SlurmError):
    """A command-line parsing error; ``lines`` are printed verbatim (getopt's own wording)."""

    def __init__(self, lines: list[str], exit_code: int = 255):
        super().__init__("\n".join(lines), exit_code)
        self.lines = lines


def render(command: str, err: SflowError) -> str:
    """The text a SLURM command prints on stderr for ``err``, without the final newline."""
    if isinstance(err, SlurmError):
        usage = isinstance(err, UsageError)
        lines = list(err.lines) if usage else err.message.split("\n")
        if err.line is not None:
            lines[0] = f"{lines[0]} ({err.source or 'batch script'} line {err.line})"
        return "\n".join([*err.preface,
                          *(lines if usage else [f"{command}: error: {line}" for line in lines])])
    return f"{command}: error: {err}"


class MithrilError(SflowError):
    """The Mithril API refused or could not answer a request.

    The message is one line for a person (``mithril: ...``), never a traceback
    and never the API key; ``status`` is the HTTP status when there was one.
    """

    def __init__(self, message: str, *, status: int | None = None, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.status = status
        self.exit_code = exit_code


def to_wire(err: SflowError) -> dict:
    """``err`` as plain JSON data, to cross the socket between the controller and a command."""
    data = {"kind": "sflow", "message": str(err), "exit_code": getattr(err, "exit_code", 1)}
    if isinstance(err, SlurmError):
        data.update(kind="slurm", message=err.message, line=err.line, source=err.source, preface=list(err.preface))
        if isinstance(err, UsageError):
            data.update(kind="usage", lines=list(err.lines))
    elif isinstance(err, MithrilError):
        data.update(kind="mithril", message=err.message, status=err.status)
    return data


def from_wire(data: dict) -> SflowError:
    """The error ``to_wire`` described, rendered as it would have been where it was raised."""
    kind, message, exit_code = data.get("kind"), data.get("message", ""), data.get("exit_code", 1)
    if kind == "usage":
        err: SflowError = UsageError(list(data.get("lines") or [message]), exit_code)
    elif kind == "slurm":
        err = SlurmError(message, exit_code, preface=tuple(data.get("preface") or ()))
    elif kind == "mithril":
        return MithrilError(message, status=data.get("status"), exit_code=exit_code)
    else:
        err = SflowError(message)
        err.exit_code = exit_code
        return err
    err.line, err.source = data.get("line"), data.get("source")
    return err
