"""Download a file with a timeout and check its SHA-256 (used by test_tipc/prepare.sh).

    python test_tipc/tipc_fetch.py URL DEST [--sha256 HEX] [--timeout SECONDS]

The file is written to ``DEST.part`` and renamed to DEST only when it is complete and,
if ``--sha256`` is given, matches. Exit codes: 0 downloaded (and verified), 1 the URL
could not be fetched, 3 checksum mismatch (nothing left at DEST).
``python test_tipc/tipc_fetch.py --sha256-of FILE`` prints a file's SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from mobilenetv3_tipc.cli import run_main

logger = logging.getLogger("tipc_fetch")

EXIT_UNREACHABLE = 1
EXIT_CHECKSUM = 3
CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, sha256: str | None, timeout: float) -> int:
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, part.open("wb") as out:  # noqa: S310
            shutil.copyfileobj(response, out, CHUNK)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        logger.error("cannot download %s: %s", url, exc)
        return EXIT_UNREACHABLE
    actual = sha256_of(part)
    if sha256 and actual.lower() != sha256.lower():
        part.unlink(missing_ok=True)
        logger.error("checksum mismatch for %s: expected sha256 %s, got %s", url, sha256, actual)
        return EXIT_CHECKSUM
    part.replace(dest)
    if sha256:
        logger.info("downloaded %s -> %s (sha256 verified)", url, dest)
    else:
        logger.warning("downloaded %s -> %s WITHOUT checksum verification (no sha256 recorded); sha256 is %s",
                       url, dest, actual)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", help="http(s) URL")
    parser.add_argument("dest", nargs="?", type=Path, help="destination file")
    parser.add_argument("--sha256", default=None, help="expected SHA-256 (hex)")
    parser.add_argument("--timeout", type=float, default=30.0, help="socket timeout in seconds (default: 30)")
    parser.add_argument("--sha256-of", type=Path, default=None, metavar="FILE", help="print FILE's SHA-256 and exit")
    args = parser.parse_args(argv)
    if args.sha256_of is not None:
        sys.stdout.write(f"{sha256_of(args.sha256_of)}\n")
        return 0
    if not args.url or args.dest is None:
        parser.error("URL and DEST are required")
    sha = args.sha256 if args.sha256 and args.sha256.lower() != "null" else None
    return fetch(args.url, args.dest, sha, args.timeout)


if __name__ == "__main__":
    sys.exit(run_main(main))
