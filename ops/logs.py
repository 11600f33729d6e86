"""A server's stdout and stderr into a log file with a size cap: `python -m ops.logs FILE --max-bytes N --backups K`.

The stack starts one per component and hands it the component's output as a pipe (the servers write to stdout: the
Prefect server, `bentoml serve`, the workers and the flow runs they start, PostgreSQL, the Evidently UI; refused
requests alone once made a server log of ~15 GB a day). This copies its stdin to FILE and, before FILE would pass
N bytes, at a line's end where one fits, renames it to FILE.1 (FILE.1 to FILE.2, ..., the one past K deleted) and
goes on in a new FILE. Each chunk is written as it arrives (nothing is buffered here to lose); it exits at the end of
its input, i.e. when the server and everything that inherited its output have exited.
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Sequence
from pathlib import Path

CHUNK = 65536


class RotatingFile:
    """Appends to `path`, rotating at `max_bytes` into `path.1` .. `path.<backups>`."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = Path(path), max_bytes, backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self.size = os.fstat(self.fd).st_size

    def rotate(self) -> None:
        os.close(self.fd)
        oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
        oldest.unlink(missing_ok=True)
        for number in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{number}")
            if older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{number + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def write(self, data: bytes) -> None:
        while data:
            room = self.max_bytes - self.size
            if len(data) <= room:
                self._write(data)
                return
            cut = data.rfind(b"\n", 0, room) + 1  # end the file at a line's end when one fits
            if not cut:
                if self.size:
                    self.rotate()
                    continue
                cut = room  # a line longer than a whole file: split it
            self._write(data[:cut])
            self.rotate()
            data = data[cut:]

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(data)

    def close(self) -> None:
        os.close(self.fd)


def copy(source: int, target: RotatingFile) -> None:
    while chunk := os.read(source, CHUNK):
        target.write(chunk)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.logs", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--max-bytes", type=int, required=True)
    parser.add_argument("--backups", type=int, required=True)
    args = parser.parse_args(argv)
    # Stopped with its server: the stack signals the server's group first, then this once its input has ended.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    target = RotatingFile(args.file, args.max_bytes, args.backups)
    try:
        copy(0, target)
    finally:
        target.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
