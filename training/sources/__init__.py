"""Loaders: a dataset on disk -> `training.dataset.LabelledSet`.

- `mirflickr`: MIRFLICKR-25K as distributed (`mirflickr/im*.jpg`, the annotation files,
  `meta/tags/`), with its standard split;
- `library`: a folder of your own photos, their keywords (embedded or sidecar) as labels;
- `coco`: a COCO instances JSON (`instances_train2017.json`) and its image folder;
- `labels`: a folder with a simple `labels.json` and `images/` (coco128-dev's format).
"""

from __future__ import annotations

SOURCES = ("mirflickr", "library", "coco", "labels")
