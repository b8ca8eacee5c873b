"""The data the benchmarks measure on: the real first 5,000 rows of movies_metadata.csv, kept beside the
project checkout (never inside it)."""

from pathlib import Path

SHARED_SAMPLE_CSV = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "movies_metadata_head5000.csv"
