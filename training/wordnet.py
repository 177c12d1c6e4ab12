"""A small reader for the WordNet 3.0 noun database as Debian's `wordnet-base` installs it.

ImageNet's class ids (`n02124075`) are WordNet 3.0 noun offsets, so the hierarchy we build
tags from must come from exactly that version. We read `data.noun` directly instead of
depending on nltk or wn: both need a separate data download, which this project cannot do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_WORDNET_DIR = Path(os.environ.get("WNSEARCHDIR", "/usr/share/wordnet"))

_HYPERNYM_POINTERS = {"@", "@i"}


@dataclass(frozen=True)
class Synset:
    wnid: str  # "n" + 8-digit offset, as ImageNet spells it
    lemmas: tuple[str, ...]
    hypernyms: tuple[str, ...]
    gloss: str = field(compare=False)

    @property
    def name(self) -> str:
        return self.lemmas[0].replace("_", " ")


class WordNet:
    """Noun synsets by ImageNet-style id, with hypernym closure."""

    def __init__(self, synsets: dict[str, Synset]) -> None:
        self.synsets = synsets
        self._ancestors: dict[str, frozenset[str]] = {}

    @classmethod
    def load(cls, directory: Path = DEFAULT_WORDNET_DIR) -> "WordNet":
        data = Path(directory) / "data.noun"
        if not data.is_file():
            raise FileNotFoundError(
                f"{data} not found: install WordNet 3.0 with `apt-get install wordnet-base`"
            )
        synsets: dict[str, Synset] = {}
        with data.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("  "):  # licence header
                    continue
                synset = _parse_line(line)
                synsets[synset.wnid] = synset
        return cls(synsets)

    def __getitem__(self, wnid: str) -> Synset:
        return self.synsets[wnid]

    def ancestors(self, wnid: str) -> frozenset[str]:
        """Every hypernym (and instance hypernym) above `wnid`, transitively, excluding itself."""
        cached = self._ancestors.get(wnid)
        if cached is not None:
            return cached
        result: set[str] = set()
        for parent in self.synsets[wnid].hypernyms:
            result.add(parent)
            result |= self.ancestors(parent)
        frozen = frozenset(result)
        self._ancestors[wnid] = frozen
        return frozen


def _parse_line(line: str) -> Synset:
    body, _, gloss = line.partition(" | ")
    fields = body.split()
    offset, _lex_filenum, ss_type = fields[0], fields[1], fields[2]
    word_count = int(fields[3], 16)
    lemmas = tuple(fields[4 + 2 * i] for i in range(word_count))
    pos = 4 + 2 * word_count
    pointer_count = int(fields[pos])
    pos += 1
    hypernyms = []
    for _ in range(pointer_count):
        symbol, target, target_pos = fields[pos], fields[pos + 1], fields[pos + 2]
        pos += 4
        if symbol in _HYPERNYM_POINTERS and target_pos == "n":
            hypernyms.append("n" + target)
    return Synset(
        wnid=ss_type + offset if ss_type == "n" else "n" + offset,
        lemmas=lemmas,
        hypernyms=tuple(hypernyms),
        gloss=gloss.strip(),
    )
