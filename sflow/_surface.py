"""A package's public names, each loaded from its module when first asked for.

The drop-in commands import these packages on every call: a name's module is imported only
when someone uses the name (PEP 562 ``__getattr__``), never for the package alone.
"""

from __future__ import annotations

from importlib import import_module


def lazy_surface(package: str, homes: dict[str, str], namespace: dict):
    """``__getattr__`` and ``__dir__`` for ``package``, whose ``homes`` map each public name to
    the module defining it (absolute, or relative to the package)."""
    def __getattr__(name: str):
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        home = homes[name]
        value = getattr(import_module(home if home.startswith("sflow.") else f"{package}.{home}"), name)
        namespace[name] = value  # found once; later lookups do not come here
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(homes))

    return __getattr__, __dir__
