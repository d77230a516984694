"""``python3 -m sflow.mithril.emulator``: serve the emulator until SIGINT or SIGTERM.

Prints its base URL on one line first, so a script can read where it listens.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import threading

from sflow.mithril.emulator import state
from sflow.mithril.emulator.server import Emulator
from sflow.mithril.emulator.service import EmulatorConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m sflow.mithril.emulator",
                                description="A local emulator of the Mithril Compute API.")
    p.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--api-key", default=None, help="accept only this bearer key (default: any)")
    p.add_argument("--tick", type=float, default=2.0, help="seconds between auctions (production: 120)")
    p.add_argument("--notice", type=float, default=300.0, help="preemption notice in seconds")
    p.add_argument("--startup", type=float, default=3.0, help="seconds from allocation to a running instance")
    p.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that fail (0..1)")
    p.add_argument("--seed", type=int, default=0, help="seed for ids and injected faults")
    p.add_argument("--state", default=None, metavar="FILE",
                   help="keep the market in FILE: loaded at start if it exists, saved at exit")
    p.add_argument("--no-ssh", action="store_true", help="do not start SSH hosts for instances")
    return p


def default_host_factory():
    """``sflow.mithril.sshhost.host_factory`` where that module exists, else None."""
    if importlib.util.find_spec("sflow.mithril.sshhost") is None:
        return None
    from sflow.mithril import sshhost  # optional: the emulator runs without SSH hosts where it is missing

    return getattr(sshhost, "host_factory", None)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0.0 <= args.fault_rate <= 1.0:
        print("error: --fault-rate must be between 0 and 1", file=sys.stderr)
        return 2
    if args.tick <= 0:
        print("error: --tick must be positive", file=sys.stderr)
        return 2
    config = EmulatorConfig(host=args.host, port=args.port, api_key=args.api_key, tick=args.tick,
                            notice=args.notice, startup=args.startup, fault_rate=args.fault_rate, seed=args.seed,
                            host_factory=None if args.no_ssh else default_host_factory())
    try:
        emulator = Emulator(config)
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    if args.state:
        state.load_into(emulator.service, args.state)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    emulator.start()
    print(emulator.url, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.close()
        if args.state:
                state.save(emulator.service, args.state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
