"""Progress bars on stderr: tqdm when it is installed, a plain line otherwise."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], *, desc: str, unit: str = "it", total: int | None = None,
             enable: bool = True) -> Iterator[T]:
    if not enable:
        yield from items
        return
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    try:
        from tqdm import tqdm
    except ImportError:
        yield from _plain(items, desc, unit, total)
        return
    yield from tqdm(items, desc=desc, unit=unit, total=total, file=sys.stderr, dynamic_ncols=True, leave=False)


class Bar:
    """A bar advanced by hand (training epochs), with a postfix for the running figures."""

    def __init__(self, total: int, desc: str, unit: str = "it", enable: bool = True) -> None:
        self._tqdm = None
        self.total, self.desc, self.unit, self.enable = total, desc, unit, enable
        self.n = 0
        self._last_print = 0.0
        if enable:
            try:
                from tqdm import tqdm

                self._tqdm = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)
            except ImportError:
                pass

    def update(self, n: int = 1, **postfix: float | str) -> None:
        self.n += n
        if not self.enable:
            return
        if self._tqdm is not None:
            if postfix:
                self._tqdm.set_postfix({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in postfix.items()}, refresh=False)
            self._tqdm.update(n)
            return
        now = time.monotonic()
        if now - self._last_print > 2.0 or self.n >= self.total:
            self._last_print = now
            extra = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in postfix.items())
            print(f"{self.desc}: {self.n}/{self.total} {self.unit} {extra}", file=sys.stderr)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plain(items: Iterable[T], desc: str, unit: str, total: int | None) -> Iterator[T]:
    last = 0.0
    started = time.monotonic()
    for i, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last > 2.0 or (total is not None and i == total):
            last = now
            rate = i / max(now - started, 1e-9)
            print(f"{desc}: {i}/{total if total is not None else '?'} {unit} ({rate:.1f} {unit}/s)", file=sys.stderr)
