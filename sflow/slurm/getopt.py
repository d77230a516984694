"""GNU getopt_long, driven by the option table, with SLURM's wording and exit codes.

sbatch, srun and salloc stop at the first argument that is not an option
(everything after the script belongs to the script: SLURM's optstrings start
with ``+``); the query commands permute, so options may follow positionals.
"""

from __future__ import annotations

from sflow.errors import SlurmError, UsageError
from sflow.slurm.options import Option, table

STOP_AT_FIRST_POSITIONAL = {"sbatch", "srun", "salloc", "sflow"}
# Exit codes of a command-line error, as each SLURM command uses them.
USAGE_EXIT = {"sbatch": 255, "srun": 255, "salloc": 255}
# sacct prints no "Try ... --help" hint.
NO_HINT = {"sacct"}


class ParsedArgs:
    """Options in command-line order (with their arguments) and positional arguments."""

    __slots__ = ("options", "positionals")

    def __init__(self) -> None:
        self.options: list[tuple[Option, str | None]] = []
        self.positionals: list[str] = []


def _usage(command: str, message: str) -> UsageError:
    lines = [f"{command}: {message}"]
    if command not in NO_HINT:
        lines.append(f'Try "{command} --help" for more information')
    return UsageError(lines, USAGE_EXIT.get(command, 1))


def _accept(command: str, parsed: ParsedArgs, option: Option, value: str | None) -> None:
    if option.status == "rejected":
        raise SlurmError(option.note or f"--{option.long} is not supported")
    parsed.options.append((option, value))


def getopt(command: str, argv: list[str]) -> ParsedArgs:
    """The command line parsed, in a ParsedArgs of the caller's own."""
    key = (command, tuple(argv))
    if _last[0] != key:  # sbatch parses its command line several times, for what each step needs
        _last[:] = [key, _getopt(command, argv)]
    kept, parsed = _last[1], ParsedArgs()
    parsed.options, parsed.positionals = list(kept.options), list(kept.positionals)
    return parsed


_last: list = [None, None]  # the last command line parsed, and how


def _getopt(command: str, argv: list[str]) -> ParsedArgs:
    options = table(command)
    parsed = ParsedArgs()
    stop_early = command in STOP_AT_FIRST_POSITIONAL
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            parsed.positionals += argv[i:]
            break
        if arg.startswith("--"):
            name, has_value, value = arg[2:].partition("=")
            matches = options.match_long_prefix(name)
            if not matches:
                raise _usage(command, f"unrecognized option '{arg}'")
            if len(matches) > 1:
                names = " ".join(f"'--{spelling}'" for spelling, _ in matches)
                raise _usage(command, f"option '{arg}' is ambiguous; possibilities: {names}")
            spelling, option = matches[0]
            if option.arg == "none":
                if has_value:
                    raise _usage(command, f"option '--{spelling}' doesn't allow an argument")
                _accept(command, parsed, option, None)
            elif option.arg == "optional":
                _accept(command, parsed, option, value if has_value else None)
            else:
                if not has_value:
                    if i >= len(argv):
                        raise _usage(command, f"option '--{spelling}' requires an argument")
                    value = argv[i]
                    i += 1
                _accept(command, parsed, option, value)
            continue
        if arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                char = arg[j]
                j += 1
                option = options.by_short(char)
                if option is None:
                    raise _usage(command, f"invalid option -- '{char}'")
                if option.arg == "none":
                    _accept(command, parsed, option, None)
                    continue
                rest = arg[j:]
                if option.arg == "optional":
                    _accept(command, parsed, option, rest or None)
                elif rest:
                    _accept(command, parsed, option, rest)
                elif i < len(argv):
                    _accept(command, parsed, option, argv[i])
                    i += 1
                else:
                    raise _usage(command, f"option requires an argument -- '{char}'")
                break
            continue
        if stop_early:
            parsed.positionals += argv[i - 1:]
            break
        parsed.positionals.append(arg)
    return parsed


def with_environment(command: str, parsed: ParsedArgs, environ) -> ParsedArgs:
    """Put the command's input environment variables (SQUEUE_FORMAT, SINFO_SORT...) before its
    command-line options: an option given on the command line replaces its variable."""
    options = table(command)
    given = {option.long for option, _ in parsed.options}
    early = []
    for name, option in options.env_map().items():
        value = environ.get(name)
        if value is None or option.long in given or option.status == "rejected":
            continue
        early.append((option, None if option.arg == "none" else value))
    if early:
        parsed.options[:0] = early
    return parsed
