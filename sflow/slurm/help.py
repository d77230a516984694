"""``--help``, ``--usage`` and ``--version`` text, from the option table."""

from __future__ import annotations

from sflow._resources import load_compat_table
from sflow.slurm.options import table

VERSION_LINE = "slurm-wlm 22.05.8"

USAGE_TAIL = {
    "sbatch": "script(0) [args(0)...]",
    "srun": "executable(0) [args(0)...]",
    "salloc": "[command [args...]]",
}


def recorded(command: str, kind: str) -> str | None:
    """What SLURM itself prints for ``--help``/``--usage`` (compat/help_texts.toml), or None."""
    return load_compat_table("help_texts.toml").get(command, {}).get(kind)


def _line(option) -> str:
    short = f"-{option.short}, " if option.short else "    "
    if option.arg == "required":
        arg = f"={option.metavar or 'value'}"
    elif option.arg == "optional":
        arg = f"[={option.metavar or 'value'}]"
    else:
        arg = ""
    left = f"  {short}--{option.long}{arg}"
    text = option.help
    if option.status == "ignored":
        text = (text + " " if text else "") + "(accepted and ignored by sflow)"
    elif option.status == "rejected":
        text = (text + " " if text else "") + "(not supported by sflow)"
    if not text:
        return left
    if len(left) < 30:
        return f"{left:<30}{text}"
    return f"{left}\n{'':<30}{text}"


def _recorded(command: str, kind: str) -> str | None:
    """The command's own text, where compat/help.toml holds it as SLURM prints it."""
    text = load_compat_table("help.toml").get(command, {}).get(kind)
    return text[:-1] if text else None  # print() gives back the final newline


def render_help(command: str) -> str:
    recorded = _recorded(command, "help")
    if recorded is not None:
        return recorded

    options = sorted(table(command), key=lambda o: (o.short or o.long).lower())
    main = [o for o in options if o.long not in ("help", "usage", "version")]
    lines = [f"Usage: {command} [OPTIONS...] {USAGE_TAIL.get(command, '')}".rstrip()]
    for title, members in _sections(command, main):
        lines += ["", title] + [_line(o) for o in members]
    lines += ["", "Help options:", "  -h, --help                  show this help message",
              "      --usage                 display brief usage message", "",
              "Other options:", "  -V, --version               output version information and exit"]
    return "\n".join(lines)


def _sections(command: str, options: list) -> list[tuple[str, list]]:
    """The options under SLURM's own headings (compat/help_sections.toml); the rest under the first."""
    recorded = load_compat_table("help_sections.toml").get(command, [])
    if not recorded:
        return [("Parallel run options:" if command in USAGE_TAIL else "Options:", options)]
    placed = {name: i for i, section in enumerate(recorded) for name in section["options"]}
    groups: list[list] = [[] for _ in recorded]
    for option in options:
        groups[placed.get(option.long, 0)].append(option)
    return [(section["title"], group) for section, group in zip(recorded, groups)]


def render_usage(command: str) -> str:
    recorded = _recorded(command, "usage")
    if recorded is not None:
        return recorded

    items = []
    for option in table(command):
        if option.status != "supported" or option.long in ("help", "usage", "version"):
            continue
        items.append(f"[--{option.long}" + ("=" + (option.metavar or "value") if option.arg == "required" else "") + "]")
    lines, current = [], f"Usage: {command}"
    for item in items:
        if len(current) + len(item) + 1 > 80:
            lines.append(current)
            current = " " * 14
        current += " " + item
    lines.append(current)
    lines.append(" " * 14 + " " + USAGE_TAIL.get(command, "").strip())
    return "\n".join(line.rstrip() for line in lines)
