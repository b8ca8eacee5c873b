"""Command line: `python -m tasks predict "a description" ...` and `python -m tasks build-embedding-module`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tasks.config import Settings
from tasks.errors import PermanentError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="top genres for each description, from the newest model")
    predict.add_argument("descriptions", nargs="+")
    predict.add_argument("--top", type=int, default=2)
    build = commands.add_parser("build-embedding-module", help="write the default TF Hub embedding module")
    build.add_argument("module", choices=["glove-6b-50d"])
    build.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "predict":
            _print_predictions(args.descriptions, args.top)
        else:
            from tasks.embedding_module import build_glove_module

            print(build_glove_module(args.out_dir))
    except PermanentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _print_predictions(descriptions: list[str], top: int) -> None:
    from tasks.predict import predict_top_genres

    results = predict_top_genres(descriptions, Settings.from_env().served_model_dir, top)
    for description, genres in zip(descriptions, results, strict=True):
        print(description)
        for genre, probability in genres:
            print(f"  {genre}: {probability:.3f}")


if __name__ == "__main__":
    sys.exit(main())
