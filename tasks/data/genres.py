"""Parse the `genres` field of movies_metadata.csv without `eval`.

The file stores a Python literal such as `[{'id': 16, 'name': 'Animation'}]`; JSON lists are accepted
too, and so are plain lists of names. `ast.literal_eval` only builds literals: it never runs code.
"""

from __future__ import annotations

import ast
import json
import re

MAX_GENRES_CHARS = 10_000  # the real field is under 300 characters; refuse parser-bombs

# Python's repr of the file's own lists, `[{'id': 16, 'name': 'Animation'}, ...]`, with names that repr
# writes verbatim (printable, no quote, no backslash): matched whole and read with a regex, as
# `ast.literal_eval` would read it but faster (bench/FINDINGS.md, "Data preparation and memory"). Anything else,
# a raw control character in a name included, takes the general path.
_REPR_GENRE = r"\{'id': (?:0|[1-9][0-9]*), 'name': '[^'\\]*'\}"
_REPR_GENRES = re.compile(rf"\[(?:{_REPR_GENRE}(?:, {_REPR_GENRE})*)?\]")
_REPR_NAME = re.compile(r"'name': '([^'\\]*)'")


class GenreParseError(ValueError):
    """The field is not a list of genres."""


def parse_genres(text: str) -> list[str]:
    """Genre names in the order given; an empty field or `[]` is no genres."""
    text = text.strip()
    if not text:
        return []
    if len(text) > MAX_GENRES_CHARS:
        raise GenreParseError(f"genres field of {len(text)} characters is too long")
    if _REPR_GENRES.fullmatch(text):
        names = _REPR_NAME.findall(text)
        if all(name.isprintable() for name in names):
            return [_genre_name(name, text) for name in names]
    try:
        value = json.loads(text)
    except RecursionError as err:
        raise GenreParseError("genres field nested too deeply") from err
    except json.JSONDecodeError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as err:
            raise GenreParseError(f"not a list literal: {text[:80]!r}") from err
    if not isinstance(value, list):
        raise GenreParseError(f"not a list: {text[:80]!r}")
    return [_genre_name(item, text) for item in value]


def _genre_name(item: object, text: str) -> str:
    if isinstance(item, dict):
        item = item.get("name")
    if not isinstance(item, str) or not item.strip():
        raise GenreParseError(f"genre without a name in {text[:80]!r}")
    return item.strip()
