"""One lock for the few operations that hold a whole large photo in memory at once.

A 12 MP PNG or TIFF decoded at full size (no JPEG draft mode for them) takes ~50 MB; the
verified write of a 20 MB file holds it several times over (~100 MB). Several of these at
once, in the decode and writer threads, would multiply the daemon's peak memory during a
burst; run one at a time, they cost a little throughput on rare files and bound the peak.
JPEGs (draft-decoded, a few MB) and small files never take the lock.
"""

from __future__ import annotations

import threading

large_operation = threading.Lock()

# The most pixels one decode may allocate by default (model.max_decode_pixels; tagd/decode.py
# counts them): Pillow's own decompression-bomb limit, about 270 MB as RGB. Here, and not in
# decode.py, so that the configuration can name it without importing Pillow.
DEFAULT_MAX_DECODE_PIXELS = 89_478_485
