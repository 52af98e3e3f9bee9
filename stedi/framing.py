"""How a raw file holds its records: one JSON object a line, or one JSON array of them, maybe
gzip-compressed. Records are numbered from 1 in either framing (a line, an element), so that a
record keeps its number when others are blanked or replaced (erasure) and the same record means
the same thing whatever its framing.
"""

from __future__ import annotations

import gzip
import json
import re

from stedi.errors import SourceError, first_line

_STARTS_AS_ARRAY = re.compile(rb"\s*\[")
_GZIP_MAGIC = b"\x1f\x8b"


def decompress(data: bytes, name: str) -> bytes:
    """The bytes of a file as its records are read: a gzip file (``.gz``) decompressed."""
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as err:
        raise SourceError(f"{name} is not a readable gzip file: {first_line(err)}") from err


def array_elements(data: bytes) -> list[tuple[int, int]] | None:
    """The byte spans of the elements of a file holding one JSON array, in order; ``None`` for a file
    of one record a line (including one that merely starts with ``[``)."""
    if not _STARTS_AS_ARRAY.match(data):  # looks at the leading bytes only
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    decoder = json.JSONDecoder()
    spans: list[tuple[int, int]] = []
    i = _skip_space(text, text.index("[") + 1)
    if i < len(text) and text[i] == "]":
        return [] if _skip_space(text, i + 1) == len(text) else None
    while True:
        try:
            _, end = decoder.raw_decode(text, i)
        except ValueError:
            return None  # not one valid array after all: its lines are judged one by one
        spans.append((i, end))
        i = _skip_space(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_space(text, i + 1)
            continue
        if i < len(text) and text[i] == "]" and _skip_space(text, i + 1) == len(text):
            break
        return None
    if not text.isascii():  # character offsets -> byte offsets
        starts = [len(text[:a].encode("utf-8")) for a, _ in spans]
        return [(a, a + len(text[x:y].encode("utf-8"))) for a, (x, y) in zip(starts, spans, strict=True)]
    return spans


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def records_text(data: bytes) -> bytes:
    """A file's records, one a line: an array's elements each on its line (their inner line breaks,
    which JSON allows only between tokens, made spaces; a ``null`` element a blank line); any other
    file as it is."""
    spans = array_elements(data)
    if spans is None:
        return data
    out = []
    for a, b in spans:
        element = data[a:b].replace(b"\r", b" ").replace(b"\n", b" ")
        out.append(b"" if element.strip() == b"null" else element)
    return b"".join(e + b"\n" for e in out)


def replace_records(data: bytes, new: dict[int, str | None]) -> tuple[bytes, int]:
    """A raw file with records replaced (``new``: record number as :func:`parse` numbers it -> its
    new text, or ``None`` to blank it: a line emptied, an array element set to ``null``), every
    other byte as it was, so every other record keeps its number and its text. Returns the new
    content and how many records changed."""
    spans = array_elements(data)
    changed = 0
    if spans is not None:
        pieces, at = [], 0
        for n, (a, b) in enumerate(spans, start=1):
            if n in new:
                replacement = b"null" if new[n] is None else new[n].encode("utf-8")
                if replacement != data[a:b]:
                    pieces += [data[at:a], replacement]
                    at = b
                    changed += 1
        return b"".join([*pieces, data[at:]]), changed
    lines = data.split(b"\n")
    for n, text in new.items():
        if 0 < n <= len(lines):
            replacement = b"" if text is None else text.encode("utf-8")
            if lines[n - 1].rstrip(b"\r") != replacement and (text is not None or lines[n - 1].strip()):
                lines[n - 1] = replacement
                changed += 1
    return b"\n".join(lines), changed


def blank_records(data: bytes, numbers) -> tuple[bytes, int]:
    """A raw file with the records ``numbers`` blanked (see :func:`replace_records`)."""
    return replace_records(data, dict.fromkeys(numbers))


# -- the clean path ------------------------------------------------------------------------------
