"""The ImageNet EfficientNet-Lite0 that the default bundle was exported from, in PyTorch: the
backbone training/ fine-tunes and the prior it starts from. A leaf module (training.head and
training.prior both need it, and neither may import the other for it)."""

from __future__ import annotations

import contextlib
import copy
import functools
import sys

from torch import nn


@functools.lru_cache(maxsize=1)
def _reference_net() -> nn.Module:
    from training.build_default_model import load_reference

    # The weights package announces itself on stdout; stdout is for results.
    with contextlib.redirect_stdout(sys.stderr):
        return load_reference().net


def reference_net() -> nn.Module:
    """A fresh copy of the ImageNet EfficientNet-Lite0 (weights read from disk once)."""
    return copy.deepcopy(_reference_net())
