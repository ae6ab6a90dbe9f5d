"""`python -m local.orphan_watch TAG`: the other end of processes.OrphanWatcher's pipe.

It reads its stdin until the owner closes it. "released" first means the owner stopped the
stack itself; anything else (EOF alone: the owner died) ends every process carrying TAG.
"""

from __future__ import annotations

import signal
import sys

from local.processes import kill_tagged


def main(argv: list[str]) -> int:
    tag = argv[1]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the owner's to handle
    said = sys.stdin.buffer.read()
    if said.strip() == b"released":
        return 0
    kill_tagged(tag, grace_s=2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
