"""Several XMP packets made one, at the level of the RDF text (pure; no exiftool).

Some JPEGs carry two packets: an old one behind a non-standard header (`XMP\\0://...`, which
exiv2 and most tools never see) and a standard one a later tool added without reading the
old one. Readers disagree about such a file (exiftool shows the last packet, exiv2 the
standard one), so tagd folds them into one standard packet before it writes.

The merge copies each `rdf:Description` of the lower-precedence packets into the packet that
wins, as the bytes they were (values are never re-encoded: exiftool's tag copying turns
rationals into floats and back), dropping only the top-level properties that a packet of
higher precedence also has. Namespace declarations the copied descriptions inherited from
their old ancestors go onto them, and every description gets the same `rdf:about`, as XMP
requires. Whatever cannot be merged that way raises MergeError; the caller keeps the file
as it is.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from dataclasses import dataclass, field

from tagd.errors import TagdError

RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_NOT_PROPERTIES = {f"{RDF_NS}about", f"{RDF_NS}ID", f"{RDF_NS}nodeID", f"{RDF_NS}parseType"}


class MergeError(TagdError):
    pass


@dataclass
class _Property:
    key: str  # namespace URI + local name
    start: int  # byte range of the element, or of the attribute (with its leading space)
    end: int
    attribute: bool


@dataclass
class _Description:
    start: int
    tag_end: int  # end of the start tag
    end: int
    self_closing: bool
    inherited: dict[str, str]  # prefix -> URI declared on ancestors (and not on this element)
    about_attr: tuple[int, int] | None  # byte range of ` rdf:about="..."` in the start tag
    about: str
    properties: list[_Property] = field(default_factory=list)


@dataclass
class _Packet:
    data: bytes
    rdf_close: int  # where `</rdf:RDF>` starts
    descriptions: list[_Description]


def merge(packets: list[bytes]) -> bytes:
    """One packet holding every property of `packets`; where two have the same top-level
    property, the later packet's value is kept (the order exiftool reads duplicates in).
    The result is the last packet with the others' descriptions added before its `</rdf:RDF>`."""
    if not packets:
        raise MergeError("no XMP packet to merge")
    parsed = [_parse(p) for p in packets]
    base = parsed[-1]
    about = next((d.about for p in reversed(parsed) for d in p.descriptions if d.about), "")
    seen = {prop.key for d in base.descriptions for prop in d.properties}
    added: list[bytes] = []
    for packet in reversed(parsed[:-1]):
        for desc in packet.descriptions:
            keep = [p for p in desc.properties if p.key not in seen]
            if keep:
                added.append(_copied_description(packet.data, desc, keep, about))
        seen |= {prop.key for d in packet.descriptions for prop in d.properties}
    data = base.data
    out = data[:base.rdf_close] + b"".join(added) + b"\n" + data[base.rdf_close:]
    # The base's own descriptions all lie before the insertion: their offsets still hold.
    for desc in sorted(base.descriptions, key=lambda d: d.start, reverse=True):
        if desc.about != about:
            out = _replace_about(out, desc, about)
    return out


def _replace_about(data: bytes, desc: _Description, about: str) -> bytes:
    attr = _about_attribute(about)
    if desc.about_attr is not None:
        a, b = desc.about_attr
        return data[:a] + attr + data[b:]
    at = desc.start + _name_length(data[desc.start:])
    return data[:at] + attr + data[at:]


def _copied_description(data: bytes, desc: _Description, keep: list[_Property], about: str) -> bytes:
    """The description's bytes with only the properties in `keep`, `about` as its rdf:about,
    and the namespaces it inherited from its old ancestors declared on itself."""
    cuts = [(p.start, p.end, not p.attribute) for p in desc.properties if p not in keep]
    if desc.about_attr is not None:
        cuts.append((*desc.about_attr, False))
    text = data[desc.start:desc.end]
    for a, b, element in sorted(cuts, reverse=True):
        a, b = a - desc.start, b - desc.start
        while element and text[a - 1:a] in (b" ", b"\t", b"\n", b"\r"):
            a -= 1  # an element's indentation goes with it
        text = text[:a] + text[b:]
    declarations = b"".join(f' xmlns{":" + p if p else ""}="{_escape(uri)}"'.encode()
                            for p, uri in sorted(desc.inherited.items()))
    at = _name_length(text)
    return b"\n" + text[:at] + _about_attribute(about) + declarations + text[at:]


def _about_attribute(about: str) -> bytes:
    return f' rdf:about="{_escape(about)}"'.encode()


def _name_length(tag: bytes) -> int:
    """Length of `<prefix:Name` at the start of `tag`."""
    match = re.match(rb"<[^\s/>]+", tag)
    if match is None:
        raise MergeError("a start tag without a name")
    return match.end()


def _escape(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


@dataclass
class _Open:
    """An element being parsed: its name, the namespaces in scope, where it starts, and what
    it is to the merge: rdf:RDF, a description under it, or a top-level property of one."""

    qname: str
    scope: dict[str, str]
    start: int
    role: str | None = None  # "rdf" | "desc" | "prop"
    desc: _Description | None = None
    prop: _Property | None = None


class _Parser:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.stack: list[_Open] = []
        self.descriptions: list[_Description] = []
        self.rdf_close = -1
        self.expat = xml.parsers.expat.ParserCreate()
        self.expat.ordered_attributes = True
        self.expat.StartElementHandler = self.start
        self.expat.EndElementHandler = self.end
        # Entities are refused before a packet gets here (containers.check_xmp); refuse any anyway.
        self.expat.EntityDeclHandler = self.entity

    def parse(self) -> _Packet:
        try:
            self.expat.Parse(self.data, True)
        except xml.parsers.expat.ExpatError as exc:
            raise MergeError(f"not well-formed XML ({exc})") from None
        if self.rdf_close < 0:
            raise MergeError("no rdf:RDF element")
        return _Packet(self.data, self.rdf_close, self.descriptions)

    def entity(self, *args: object) -> None:
        raise MergeError("an entity declaration")

    def start(self, qname: str, attrs: list[str]) -> None:
        at = self.expat.CurrentByteIndex
        pairs = list(zip(attrs[::2], attrs[1::2]))
        parent = self.stack[-1] if self.stack else None
        parent_scope = parent.scope if parent else {}
        own = {(k[6:] if k.startswith("xmlns:") else ""): v for k, v in pairs if k == "xmlns" or k.startswith("xmlns:")}
        node = _Open(qname, {**parent_scope, **own}, at)
        name = _uri(qname, node.scope)
        if name == f"{RDF_NS}RDF":
            node.role = "rdf"
        elif parent is not None and parent.role == "rdf":
            if name != f"{RDF_NS}Description":
                raise MergeError("a typed node directly under rdf:RDF")
            node.role, node.desc = "desc", self._description(at, pairs, node.scope, parent_scope, own)
            self.descriptions.append(node.desc)
        elif parent is not None and parent.role == "desc":
            assert parent.desc is not None
            node.role, node.prop = "prop", _Property(name, at, -1, False)
            parent.desc.properties.append(node.prop)
        self.stack.append(node)

    def end(self, qname: str) -> None:
        at = self.expat.CurrentByteIndex
        node = self.stack.pop()
        tag_end = _tag_end(self.data, node.start)
        element_end = tag_end if self.data[tag_end - 2:tag_end] == b"/>" else _tag_end(self.data, at)
        if node.desc is not None:
            node.desc.end = element_end
        elif node.prop is not None:
            node.prop.end = element_end
        elif node.role == "rdf":
            self.rdf_close = at

    def _description(self, at: int, pairs: list[tuple[str, str]], scope: dict[str, str],
                     parent_scope: dict[str, str], own: dict[str, str]) -> _Description:
        tag_end = _tag_end(self.data, at)
        inherited = {p: u for p, u in parent_scope.items() if p not in own and p != "xml"}
        about_attr, about = None, ""
        desc = _Description(at, tag_end, -1, self.data[tag_end - 2:tag_end] == b"/>", inherited, None, "")
        for key, value in pairs:
            if key == "xmlns" or key.startswith("xmlns:") or ":" not in key:
                continue
            full = _uri(key, scope)
            span = _attribute_range(self.data, at, tag_end, key)
            if full == f"{RDF_NS}about":
                about_attr, about = span, value
            elif full not in _NOT_PROPERTIES:
                desc.properties.append(_Property(full, span[0], span[1], True))
        desc.about_attr, desc.about = about_attr, about
        return desc


def _uri(qname: str, scope: dict[str, str]) -> str:
    prefix, _, local = qname.rpartition(":")
    if prefix == "xml":
        return "http://www.w3.org/XML/1998/namespace" + local
    uri = scope.get(prefix)
    if uri is None:
        raise MergeError(f"undeclared namespace prefix {prefix!r}")
    return uri + local


def _parse(data: bytes) -> _Packet:
    if data.startswith((b"\xfe\xff", b"\xff\xfe")):
        raise MergeError("a UTF-16 XMP packet")
    return _Parser(data.rstrip(b"\x00")).parse()


def _attribute_range(data: bytes, start: int, tag_end: int, qname: str) -> tuple[int, int]:
    """The bytes of ` qname="value"` (with its leading whitespace) inside a start tag."""
    tag = data[start:tag_end]
    match = re.search(rb"\s+" + re.escape(qname.encode()) + rb"\s*=\s*(\"[^\"]*\"|'[^']*')", tag)
    if match is None:
        raise MergeError(f"attribute {qname} not found where expat saw it")
    return start + match.start(), start + match.end()


def _tag_end(data: bytes, i: int) -> int:
    """The index just after the '>' that closes the tag starting at `i` (quotes respected)."""
    quote = 0
    n = len(data)
    j = i + 1
    while j < n:
        c = data[j]
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):
            quote = c
        elif c == 0x3E:
            return j + 1
        j += 1
    raise MergeError("a tag that never closes")
