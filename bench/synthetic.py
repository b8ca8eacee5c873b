"""Scale the real movies file up: N new movies whose text is recombined from real sentences.

Each new movie copies a real movie's record (all 24 columns, so genres, languages and the CSV's shape stay
real), gets a new id, and an overview of as many sentences as the real one (at least two, so that
overviews rarely repeat), drawn from the overviews of
real movies that share its first genre: the tokens, sentence lengths and the genre signal stay realistic,
and nearly every overview is a new text (so the embedding cache does not flatter the cold runs).

    python bench/synthetic.py ROWS OUT.csv [--source CSV] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

from bench.sample import SHARED_SAMPLE_CSV
from tasks.data.genres import GenreParseError, parse_genres

FIRST_NEW_ID = 10_000_000
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def write_scaled_csv(rows: int, out: Path, source: Path = SHARED_SAMPLE_CSV, seed: int = 0) -> Path:
    """Write `rows` recombined movies to `out` (streamed: memory holds the source, not the output)."""
    header, templates, sentences = _read_source(source)
    rng = random.Random(seed)
    id_column, overview_column = header.index("id"), header.index("overview")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for number in range(rows):
            record, first_genre, length = rng.choice(templates)
            record = list(record)
            record[id_column] = str(FIRST_NEW_ID + number)
            record[overview_column] = " ".join(rng.choices(sentences[first_genre], k=max(length, 2)))
            writer.writerow(record)
    tmp.replace(out)
    return out


def _read_source(source: Path) -> tuple[list[str], list[tuple[list[str], str, int]], dict[str, list[str]]]:
    """The header, the usable real records (with first genre and sentence count) and sentences by genre."""
    csv.field_size_limit(sys.maxsize)
    templates: list[tuple[list[str], str, int]] = []
    sentences: dict[str, list[str]] = defaultdict(list)
    with source.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        genres_column, overview_column = header.index("genres"), header.index("overview")
        for record in reader:
            if len(record) != len(header):
                continue
            try:
                genres = parse_genres(record[genres_column])
            except GenreParseError:
                continue
            parts = [s for s in SENTENCE_END.split(record[overview_column].strip()) if s]
            if genres and parts:
                templates.append((record, genres[0], len(parts)))
                sentences[genres[0]].extend(parts)
    if not templates:
        raise SystemExit(f"{source} has no usable records")
    return header, templates, sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", type=Path, default=SHARED_SAMPLE_CSV)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_scaled_csv(args.rows, args.out, args.source, args.seed))


if __name__ == "__main__":
    main()
