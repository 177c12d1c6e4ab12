"""tagd's own XMP namespace: what tagd did to a photo's keywords, so that it can be undone.

Stored in the photo (or its sidecar) next to the keywords, so it travels with the file:
- the keyword fields exactly as they were before tagd first wrote (`Original*`), and which
  of them existed (`OriginalPresent`);
- what tagd added, removed, and saw the user delete after tagd added it (`Rejected*`);
- the user's keywords tagd would remove but, in `suggest` mode, left (`SuggestedRemovals`);
- the full keyword list tagd last wrote (to tell the user's later edits from tagd's);
- the IPTC charset and digest as they were (`OriginalIPTC`, see iptc.py), and whether the file
  had MWG regions before tagd wrote its own (`RegionsBefore`, see regions.py);
- the model version and each machine tag's score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tagd.metadata.fields import FIELDS, as_list, split_xp
from tagd.metadata.iptc import IptcState

NS = "XMP-tagd"
SCHEMA_VERSION = "1"
_ORIGINAL_TAG = {
    "subject": "OriginalSubject",
    "hierarchical": "OriginalHierarchicalSubject",
    "tagslist": "OriginalTagsList",
    "lastkeywordxmp": "OriginalLastKeywordXMP",
    "iptc": "OriginalIPTCKeywords",
    "xpkeywords": "OriginalXPKeywords",
}


@dataclass
class Provenance:
    model_version: str | None = None
    machine_tags: dict[str, float] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    suggested_removals: list[str] = field(default_factory=list)  # suggest mode: not applied
    originals: dict[str, list[str]] = field(default_factory=dict)  # field short name -> values
    created_sidecar: bool = False
    original_iptc: IptcState | None = None  # the IPTC charset and digest before tagd (None: not recorded)
    regions_before: str | None = None  # "present" | "absent": whether the file had MWG regions before tagd wrote some

    @classmethod
    def from_exiftool(cls, record: dict[str, Any]) -> "Provenance | None":
        def get(name: str) -> Any:
            return record.get(f"{NS}:{name}")

        if get("Version") is None:
            return None
        machine: dict[str, float] = {}
        for item in as_list(get("MachineTags")):
            name, sep, score = item.rpartition(";")
            if sep:
                try:
                    machine[name] = float(score)
                except ValueError:
                    pass
        originals: dict[str, list[str]] = {}
        for short in as_list(get("OriginalPresent")):
            if short in _ORIGINAL_TAG:
                raw = get(_ORIGINAL_TAG[short])
                originals[short] = split_xp(raw) if short == "xpkeywords" else as_list(raw)
        return cls(
            model_version=None if get("ModelVersion") is None else str(get("ModelVersion")),
            machine_tags=machine,
            added=as_list(get("AddedKeywords")),
            removed=as_list(get("RemovedKeywords")),
            rejected=as_list(get("RejectedKeywords")),
            written=as_list(get("WrittenKeywords")),
            suggested_removals=as_list(get("SuggestedRemovals")),
            originals=originals,
            created_sidecar=str(get("CreatedSidecar") or "") == "True",
            original_iptc=None if get("OriginalIPTC") is None else IptcState.parse(str(get("OriginalIPTC"))),
            regions_before=None if get("RegionsBefore") is None else str(get("RegionsBefore")),
        )

    def assignments(self) -> list[str]:
        """exiftool arguments that replace the whole tagd namespace with this record."""
        args = [f"-{NS}:all=", f"-{NS}:Version={SCHEMA_VERSION}"]
        if self.model_version:
            args.append(f"-{NS}:ModelVersion={self.model_version}")
        if self.created_sidecar:
            args.append(f"-{NS}:CreatedSidecar=True")
        if self.original_iptc is not None and self.original_iptc.charset != "none":
            args.append(f"-{NS}:OriginalIPTC={self.original_iptc.text()}")
        if self.regions_before:
            args.append(f"-{NS}:RegionsBefore={self.regions_before}")
        args += [f"-{NS}:MachineTags={name};{score:.4f}" for name, score in self.machine_tags.items()]
        args += [f"-{NS}:AddedKeywords={k}" for k in self.added]
        args += [f"-{NS}:RemovedKeywords={k}" for k in self.removed]
        args += [f"-{NS}:RejectedKeywords={k}" for k in self.rejected]
        args += [f"-{NS}:WrittenKeywords={k}" for k in self.written]
        args += [f"-{NS}:SuggestedRemovals={k}" for k in self.suggested_removals]
        for short in FIELDS:
            if short not in self.originals:
                continue
            args.append(f"-{NS}:OriginalPresent={short}")
            values = self.originals[short]
            if short == "xpkeywords":
                if values:
                    args.append(f"-{NS}:OriginalXPKeywords={';'.join(values)}")
            else:
                args += [f"-{NS}:{_ORIGINAL_TAG[short]}={v}" for v in values]
        return args

    def comparable(self) -> tuple:
        """Everything that, if equal, means rewriting would change nothing."""
        return (
            self.model_version,
            tuple(sorted((k, round(v, 4)) for k, v in self.machine_tags.items())),
            tuple(sorted(self.added)), tuple(sorted(self.removed)), tuple(sorted(self.rejected)),
            tuple(sorted(self.written)), tuple(sorted(self.suggested_removals)),
            tuple(sorted((k, tuple(v)) for k, v in self.originals.items())),
            self.created_sidecar,
            self.original_iptc.text() if self.original_iptc is not None and self.original_iptc.charset != "none" else None,
            self.regions_before,
        )
