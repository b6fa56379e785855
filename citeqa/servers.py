"""Start a server process and wait until its port accepts connections: the one helper the benchmark
harness, the test fixtures and scripts/ share.

A worked example (a real `python -m http.server` on a free loopback port):

>>> import sys, urllib.request
>>> port = free_port()
>>> with serving([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], port,
...              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
...     urllib.request.urlopen(f"http://127.0.0.1:{port}/").status
200
>>> proc.poll() is not None  # stopped on leaving the block
True

A process that exits before it serves is reported at once, not after the timeout:

>>> start([sys.executable, "-c", "raise SystemExit(3)"], free_port(), what="demo")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
citeqa.servers.ServerStartError: demo exited with code 3 before it served on 127.0.0.1:...
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

HOST = "127.0.0.1"


class ServerStartError(RuntimeError):
    """The server exited, or did not accept connections in time."""


def free_port(host: str = HOST) -> int:
    """A port nothing listens on now (bound, then released)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, seconds: float = 30, host: str = HOST,
              what: str = "the server") -> None:
    """Return once `host:port` accepts a TCP connection; raise ServerStartError if `proc` exits first
    or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise ServerStartError(f"{what} exited with code {proc.returncode} before it served on "
                                       f"{host}:{port}") from None
            if time.monotonic() > deadline:
                raise ServerStartError(f"{what} did not accept connections on {host}:{port} within "
                                       f"{seconds:.0f} s") from None
            time.sleep(0.2)


def stop(proc: subprocess.Popen, wait_s: float = 10) -> None:
    """Terminate a child process; kill it if it has not exited after `wait_s` seconds."""
    proc.terminate()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start(argv: list[str], port: int, seconds: float = 30, host: str = HOST, what: str | None = None,
          **popen) -> subprocess.Popen:
    """Run `argv` (`popen`: subprocess.Popen's keyword arguments) and return the process once `host:port`
    accepts connections; a process that fails to serve is stopped and ServerStartError raised."""
    proc = subprocess.Popen(argv, **popen)
    try:
        wait_port(port, proc, seconds, host, what or Path(argv[0]).name)
    except BaseException:
        stop(proc)
        raise
    return proc


@contextmanager
def serving(argv: list[str], port: int, seconds: float = 30, host: str = HOST, what: str | None = None,
            stop_s: float = 10, **popen) -> Iterator[subprocess.Popen]:
    """`start(...)` for the length of a `with` block; stopped (`stop(proc, stop_s)`) on leaving it."""
    proc = start(argv, port, seconds, host, what, **popen)
    try:
        yield proc
    finally:
        stop(proc, stop_s)


def start_chroma(path: Path, port: int | None = None, seconds: float = 30) -> tuple[subprocess.Popen, str]:
    """A real `chroma run` server (the venv's) over `path` on a loopback port (a free one unless given);
    returns (process, URL) once it accepts connections."""
    port = port or free_port()
    exe = str(Path(sys.executable).with_name("chroma"))
    proc = start([exe, "run", "--path", str(path), "--host", HOST, "--port", str(port)], port, seconds,
                 what="`chroma run`", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://{HOST}:{port}"
