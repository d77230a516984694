"""A local emulator of the Mithril Compute API: the spot auction, reservations and instances on loopback.

    from sflow.mithril.emulator import start_emulator
    emu = start_emulator(tick=0.5)          # port 0: a free one
    emu.url                                 # "http://127.0.0.1:PORT"
    emu.tick(); emu.close()

From a shell: ``python3 -m sflow.mithril.emulator --port 8080``. See docs/mithril-emulator.md.
"""

from sflow.mithril.emulator.market import Market, MarketConfig, MarketError
from sflow.mithril.emulator.server import Emulator, start_emulator
from sflow.mithril.emulator.service import EmulatorConfig, PLACEHOLDER_DESTINATION


def main(argv=None) -> int:
    # Deferred: run as ``python3 -m``, __main__ must not be imported twice (once by this package).
    from sflow.mithril.emulator.__main__ import main as _main

    return _main(argv)


__all__ = ["Emulator", "EmulatorConfig", "Market", "MarketConfig", "MarketError", "PLACEHOLDER_DESTINATION",
           "main", "start_emulator"]
