"""bench/profile_scan.py sorts py-spy's stacks by pipeline stage; a wrong rule would misreport
where the time goes, so the rules are checked on stacks as py-spy writes them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from profile_scan import stage_of, summarise  # noqa: E402

MAIN = "_run_module_as_main (<frozen runpy>:198);main (tagd/cli/__init__.py:42);cmd_scan (tagd/cli/service.py:80)"
WORKER = "_bootstrap (threading.py:1002);run (threading.py:982);_worker (concurrent/futures/thread.py:83)"


def test_stacks_go_to_their_stage() -> None:
    cases = {
        f"{WORKER};_to_model_input (tagd/decode.py:140);ImageFile.load (PIL/ImageFile.py:425)": "decode",
        f"{MAIN};Tagger._flush (tagd/tagger.py:103);Model.predict (tagd/model.py:223);"
        "Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:406)": "inference",
        f"{WORKER};MetadataWriter._verify (tagd/metadata/writer.py:400);"
        "ExifTool.read_json (tagd/metadata/exiftool.py:150);ExifTool._read_until (tagd/metadata/exiftool.py:124)":
            "waiting on exiftool",
        f"{WORKER};MetadataWriter._replace (tagd/metadata/writer.py:470);_fsync_dir (tagd/metadata/writer.py:601)": "fsync",
        f"{WORKER};MetadataWriter._precheck (tagd/metadata/writer.py:364);Path.read_bytes (pathlib.py:1051)":
            "write (Python)",
        f"{WORKER};work_item.run (concurrent/futures/thread.py:58);Condition.wait (threading.py:327)":
            "waiting for work",
        f"{WORKER}": "waiting for work",
        f"{MAIN};Pipeline._record (tagd/pipeline.py:300);Index.write (tagd/index/db.py:88)": "index",
        f"{MAIN};refine (tagd/refine.py:410)": "refine",
        f"{MAIN};_find_and_load (<frozen importlib._bootstrap>:1176)": "start-up",
        "select (selectors.py:415)": "waiting for work",
        "something (elsewhere.py:1)": "other",
    }
    for stack, stage in cases.items():
        assert stage_of(stack) == stage, stack


def test_summary_adds_counts_per_stage_and_skips_junk() -> None:
    lines = [
        f"{WORKER};_to_model_input (tagd/decode.py:140) 7",
        f"{WORKER};_resized (tagd/decode.py:90) 3",
        f"{MAIN};Model.predict (tagd/model.py:223) 5",
        "",
        "not a sample line",
    ]
    assert summarise(lines) == {"decode": 10, "inference": 5}
