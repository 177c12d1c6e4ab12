"""One warm `exiftool -stay_open` process: every metadata read and write goes through it.

exiftool is the strongest writer available (maker-note offsets, IPTC digests and charsets,
Extended XMP, unknown namespaces kept, corrupt input refused) and it runs out of process, so
a hostile file cannot crash the daemon. Starting perl costs ~100 ms; keeping one process
alive makes a call cost only the work itself.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from tagd.errors import TagdError

log = logging.getLogger(__name__)

INSTALL_HINT = "install it with: sudo apt-get install libimage-exiftool-perl"
_READY = b"{ready}"


class ExifToolMissing(TagdError):
    def __init__(self) -> None:
        super().__init__(f"exiftool not found on PATH; tagd needs it to read and write keywords ({INSTALL_HINT})")


class ExifToolError(TagdError):
    """exiftool failed, timed out or died; the message is its first error line."""


def config_path() -> Path:
    """exiftool config that defines tagd's own XMP namespace."""
    return Path(str(resources.files("tagd.metadata") / "tagd_namespace.config"))


def check_available() -> str:
    """exiftool's version, or ExifToolMissing with the command that installs it."""
    exe = shutil.which("exiftool")
    if not exe:
        raise ExifToolMissing()
    return subprocess.run([exe, "-ver"], capture_output=True, text=True, timeout=30, env=child_environment()).stdout.strip()


def _arg_bytes(arg: str | os.PathLike[str]) -> bytes:
    """One line of exiftool's argument file. A path goes as the bytes the file system has (a
    name that is not UTF-8 must still be found); text as UTF-8, surrogatepass because
    XPKeywords carries UTF-16 surrogates on purpose (fields.xp_argument)."""
    if isinstance(arg, str):
        return arg.encode("utf-8", "surrogatepass")
    return os.fsencode(arg)


class ExifTool:
    """A thread-safe handle on one `exiftool -stay_open True -@ -` process.

    Every call is a separate exiftool command; calls are serialised by a lock. A process that
    dies or hangs is killed and replaced at the next call, and the failed call raises.
    """

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._counter = 0
        atexit.register(self.close)

    def __enter__(self) -> "ExifTool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> subprocess.Popen[bytes]:
        exe = shutil.which("exiftool")
        if not exe:
            raise ExifToolMissing()
        return _spawner().spawn([exe, "-config", str(config_path()), "-stay_open", "True", "-@", "-"])

    def _configure(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            os.set_blocking(stream.fileno(), False)
        return proc

    def execute(self, args: Sequence[str | os.PathLike[str]]) -> tuple[str, str]:
        """Run one exiftool command; returns (stdout, stderr) as text."""
        encoded = [_arg_bytes(a) for a in args]
        for arg, raw in zip(args, encoded):
            if b"\n" in raw or b"\r" in raw:
                # The argument file is line-based: a newline would split one argument in two.
                raise ExifToolError(f"argument contains a line break: {os.fspath(arg)[:60]!r}")
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._configure(self._start())
            proc = self._proc
            self._counter += 1
            # -echo4 puts a marker on stderr after the command's own stderr, so both streams
            # can be read to a known end without guessing.
            marker = f"{{ready{self._counter}}}"
            # (First, so that a "--" ending the options in `args` cannot swallow it.)
            lines = [b"-echo4", marker.encode(), *encoded, f"-execute{self._counter}".encode(), b""]
            payload = b"\n".join(lines)
            try:
                assert proc.stdin is not None
                proc.stdin.write(payload)
                proc.stdin.flush()
                out, err = self._read_until(proc, f"{{ready{self._counter}}}".encode(), marker.encode())
            except (OSError, ExifToolError) as exc:
                self._kill()
                raise ExifToolError(f"exiftool failed: {exc}") from None
            return out, err

    def _read_until(self, proc: subprocess.Popen[bytes], out_marker: bytes, err_marker: bytes) -> tuple[str, str]:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + self.timeout
        out_done = err_done = False
        while not (out_done and err_done):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ExifToolError(f"no answer within {self.timeout:.0f} s")
            readable, _, _ = select.select([proc.stdout, proc.stderr], [], [], min(remaining, 1.0))
            if not readable and proc.poll() is not None:
                raise ExifToolError(f"exited with status {proc.returncode}")
            for stream in readable:
                chunk = stream.read(65536)
                if chunk is None:
                    continue
                if chunk == b"":
                    if proc.poll() is not None:
                        raise ExifToolError(f"exited with status {proc.returncode}")
                    continue
                if stream is proc.stdout:
                    out += chunk
                    out_done = out.rstrip().endswith(out_marker)
                else:
                    err += chunk
                    err_done = err.rstrip().endswith(err_marker)
        out_text = out.rstrip()[: -len(out_marker)].decode("utf-8", "replace")
        err_text = err.rstrip()[: -len(err_marker)].decode("utf-8", "replace")
        return out_text, err_text

    def read_json(self, paths: Sequence[Path], args: Sequence[str] = (), iptc_charset: str = "UTF8") -> list[dict[str, Any]]:
        """`exiftool -j` on `paths`; numbers stay strings (a keyword "1.50" must stay "1.50").
        `iptc_charset`: how to decode IPTC that does not declare its charset (iptc.IptcState.read_charset)."""
        # Absolute paths: a file name starting with "-" must never be read as an option.
        out, err = self.execute(["-j", "-charset", f"iptc={iptc_charset}", *args, *(Path(os.path.abspath(p)) for p in paths)])
        if not out.strip():
            raise ExifToolError(first_error(err) or "exiftool returned nothing")
        try:
            return json.loads(out, parse_int=str, parse_float=str)
        except json.JSONDecodeError as exc:
            raise ExifToolError(f"unreadable exiftool output ({exc})") from None

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.write(b"-stay_open\nFalse\n")
            proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=10)


class ExifToolPool:
    """Several warm exiftool processes behind ExifTool's interface, one per calling thread.

    exiftool is single-threaded Perl: one process uses one core. Each thread that calls is
    bound to one process for its lifetime (so a write and its verification run in the same
    process, in order); threads beyond `size` share processes round-robin.
    """

    def __init__(self, size: int, timeout: float = 60.0) -> None:
        self.size = max(1, size)
        self.processes = [ExifTool(timeout) for _ in range(self.size)]
        self._local = threading.local()
        self._next = 0
        self._lock = threading.Lock()

    def _mine(self) -> ExifTool:
        tool = getattr(self._local, "tool", None)
        if tool is None:
            with self._lock:
                tool = self.processes[self._next % self.size]
                self._next += 1
            self._local.tool = tool
        return tool

    def __enter__(self) -> "ExifToolPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, args: Sequence[str | os.PathLike[str]]) -> tuple[str, str]:
        return self._mine().execute(args)

    def read_json(self, paths: Sequence[Path], args: Sequence[str] = (), iptc_charset: str = "UTF8") -> list[dict[str, Any]]:
        return self._mine().read_json(paths, args, iptc_charset)

    def close(self) -> None:
        for tool in self.processes:
            tool.close()


class _Spawner:
    """Starts exiftool processes from one long-lived thread, with PR_SET_PDEATHSIG.

    `exiftool -stay_open` keeps polling stdin after EOF, so a tagd killed with SIGKILL would
    leave it running for ever. The kernel can kill it when its parent dies, but "parent" is
    the thread that forked it: forking from a short-lived worker thread would kill exiftool
    when that thread ends. So every exiftool is forked from this one thread, which lives as
    long as the process.
    """

    def __init__(self) -> None:
        import queue

        self._requests: "queue.Queue[tuple[list[str], queue.Queue]]" = queue.Queue()
        threading.Thread(target=self._run, name="tagd-exiftool-spawner", daemon=True).start()

    def _run(self) -> None:
        while True:
            argv, reply = self._requests.get()
            try:
                reply.put(subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    start_new_session=True,  # a Ctrl-C in the terminal must not kill it mid-write
                    preexec_fn=_die_with_parent, env=child_environment(),
                ))
            except BaseException as exc:  # handed to the caller, who raises it
                reply.put(exc)

    def spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        import queue

        reply: "queue.Queue" = queue.Queue(maxsize=1)
        self._requests.put((argv, reply))
        result = reply.get()
        if isinstance(result, BaseException):
            raise result
        return result


# What a child process must not inherit: systemd's notify socket and watchdog settings are the
# daemon's own (a child that wrote READY=1 or WATCHDOG=1 there would speak for tagd).
PRIVATE_ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def child_environment() -> dict[str, str]:
    """This process's environment, less what is the daemon's alone (PRIVATE_ENVIRONMENT)."""
    return {k: v for k, v in os.environ.items() if k not in PRIVATE_ENVIRONMENT}


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux, or no libc: the daemon's cgroup cleans up instead
        pass


_spawner_lock = threading.Lock()
_spawner_instance: _Spawner | None = None


def _spawner() -> _Spawner:
    global _spawner_instance
    with _spawner_lock:
        if _spawner_instance is None:
            _spawner_instance = _Spawner()
        return _spawner_instance


def first_error(stderr: str) -> str | None:
    """exiftool's first "Error: ..." (or warning) line, without the file name it appends."""
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("Error"):
            text = line.partition(":")[2].strip()
            return text.rsplit(" - ", 1)[0] if " - " in text else text
    for line in stderr.splitlines():
        if line.strip().startswith("Warning"):
            return line.partition(":")[2].strip().rsplit(" - ", 1)[0]
    return None
