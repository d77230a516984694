"""Money as integer cents: parsed with Decimal (never float), shown as dollars.

Mithril writes prices as dollar strings (``"$25.60"``) in bids and auctions and
as integer cents in ``/v2/pricing/current``; everything inside sflow is cents.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

_AMOUNT = re.compile(r"\d+(\.\d*)?|\.\d+")


def parse_amount(text: str | int | float | Decimal) -> Decimal:
    """Dollars in ``"$16"``, ``"16.00"``, ``" $1.5 "``, exactly; ValueError for anything else."""
    if isinstance(text, float):
        text = format(Decimal(repr(text)), "f")  # the shortest spelling: 0.12 stays 0.12
    raw = str(text).strip()
    if raw.startswith("$"):
        raw = raw[1:].strip()
    if not _AMOUNT.fullmatch(raw):  # no signs, exponents, NaN or Infinity
        raise ValueError(f"not a dollar amount: {text!r}")
    return Decimal(raw)


def parse_dollars(text: str | int | float | Decimal, *, rounding: str | None = None) -> int:
    """Cents in a dollar amount (see ``parse_amount``).

    Without ``rounding`` a fraction of a cent is refused (a user's price means
    what it says); with one (``ROUND_HALF_UP``...) it is rounded, for market data.
    """
    cents = parse_amount(text) * 100
    if cents != cents.to_integral_value():
        if rounding is None:
            raise ValueError(f"not a whole number of cents: {text!r}")
        cents = cents.to_integral_value(rounding=rounding)
    return int(cents)


def dollars(cents: int) -> str:
    """``2400`` -> ``"$24.00"``."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(int(cents)), 100)
    return f"{sign}${whole}.{part:02d}"


def per_gpu(cents: int, gpus: int) -> int:
    """An instance-hour price per GPU-hour, to the nearest cent (for showing only)."""
    return int((Decimal(cents) / max(1, gpus)).to_integral_value(rounding=ROUND_HALF_UP))


def times(cents: int, factor: Decimal | int, rounding: str = ROUND_CEILING) -> int:
    """``cents * factor`` in whole cents; upward by default, so a bound stays a bound."""
    return int((Decimal(cents) * Decimal(factor)).to_integral_value(rounding=rounding))


__all__ = ["ROUND_CEILING", "ROUND_FLOOR", "ROUND_HALF_UP", "dollars", "parse_amount", "parse_dollars", "per_gpu",
           "times"]
