"""``python -m batchops`` and the ``batchops`` console script (``start``).

Until the CLI has installed its own handlers (``batchops.cli.run``), a signal has nothing to clean
up: SIGINT exits 130 and SIGTERM 143 at once, quietly, instead of raising inside the imports of
start-up, where no handler can catch it and Python prints a traceback.
"""

import os
import signal
from types import FrameType

_EARLY: dict[int, tuple[int, bytes]] = {
    signal.SIGINT: (130, b"interrupted\n"),
    signal.SIGTERM: (143, b"terminated\n"),
}


def _early_exit(signum: int, frame: FrameType | None) -> None:
    code, message = _EARLY.get(signum, (130, b"interrupted\n"))
    os.write(2, message)
    os._exit(code)


def start() -> None:
    for sig in _EARLY:
        signal.signal(sig, _early_exit)
    from batchops.cli import run

    run()


if __name__ == "__main__":
    start()
