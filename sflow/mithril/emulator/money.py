"""Money on the wire: "$12.34" strings in bids and auctions, integer cents inside."""

from __future__ import annotations

import re

_DOLLARS = re.compile(r"^\$?(\d{1,9})(?:\.(\d{1,2}))?$")


def parse_dollars(text: str) -> int:
    """``"$12.34"`` (the ``$`` and the cents are optional) -> 1234; ValueError otherwise."""
    m = _DOLLARS.match(text.strip())
    if not m:
        raise ValueError(f"not a dollar amount: {text!r}")
    whole, frac = m.group(1), (m.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(frac)


def dollars(cents: int) -> str:
    """1234 -> ``"$12.34"``."""
    return f"${cents // 100}.{cents % 100:02d}"
