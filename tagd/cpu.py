"""How tagd's own work shares the cores: one BLAS thread.

numpy's OpenBLAS starts a worker thread per core and, after each matrix product, lets it
busy-wait for the next one. tagd's products are small (a batch of label scores times the
label -> tag matrix, a photo against the library's embeddings) and run while decoding,
inference and exiftool already use every core, so that spinning thread only takes CPU away
from them. Measured with `tagd scan` on 200 12 MP JPEGs on 2 cores: the spinning thread used
24 ms of CPU per photo; with one BLAS thread the scan went from 18.7 to 23.6 photos/s.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_limiter: object | None = None


def single_threaded_blas() -> None:
    """Limit every loaded BLAS library to one thread, for the rest of the process."""
    global _limiter
    if _limiter is not None:
        return
    import numpy  # noqa: F401  (BLAS is loaded with numpy: limit what is there)
    from threadpoolctl import threadpool_limits

    # Kept referenced: the limit holds until restore_original_limits(), which tagd never calls.
    _limiter = threadpool_limits(limits=1, user_api="blas")
    log.debug("BLAS limited to one thread")


def blas_threads() -> int:
    """The most threads any loaded BLAS library may use now (0: none loaded)."""
    from threadpoolctl import threadpool_info

    return max((int(info.get("num_threads", 0)) for info in threadpool_info() if info.get("user_api") == "blas"), default=0)
