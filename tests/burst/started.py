"""What the harness's parts share: a ``with`` block starts the part and always stops what it started."""

from __future__ import annotations


class Started:
    """A part with ``start()`` and ``stop()``; ``stop`` undoes whatever ``start`` got to."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
