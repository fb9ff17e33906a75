"""Hash a file and check that it is UTF-8: ``python -I -S utf8check.py FILE`` prints
``utf-8 <sha256>`` and exits 0 when it is, and exits 1 when it is not.

``batchops.datasets`` runs this beside its own read of a big dataset file, which then only decodes
rows. Checking UTF-8 holds the GIL for as long as decoding rows does, so only another process can
overlap the two; the sha256 runs in a thread here (hashlib lets go of the GIL). Standard library
only, so the interpreter starts in milliseconds without site-packages.
"""

from __future__ import annotations

import codecs
import hashlib
import sys
import threading

BLOCK = 8 * 2**20
PIECE = 64 * 2**10  # decoded and thrown away a piece at a time: see rowcheck.UTF8_PIECE


def sha256_if_utf8(path: str) -> str | None:
    digest, decoder = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")()
    hashing: threading.Thread | None = None
    try:
        with open(path, "rb", buffering=0) as f:
            while block := f.read(BLOCK):
                if hashing is not None:
                    hashing.join()
                hashing = threading.Thread(target=digest.update, args=(block,))
                hashing.start()
                view = memoryview(block)
                for start in range(0, len(block), PIECE):  # a character cut at the end of a
                    decoder.decode(view[start : start + PIECE])  # piece ends in the next one
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return None
    finally:
        if hashing is not None:
            hashing.join()
    return digest.hexdigest()


if __name__ == "__main__":
    sha256 = sha256_if_utf8(sys.argv[1])
    if sha256 is None:
        sys.exit(1)
    print("utf-8", sha256)
