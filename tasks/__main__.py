"""Command line of the pipeline's tools.

python -m tasks predict ["a description" …]   genres from the served model (default: the blog's three)
python -m tasks models                        promoted versions, their metrics, which is served
python -m tasks rollback [--to N]             re-publish version N (default: the previous one) as the newest
python -m tasks build-embedding-module use-m3|glove-6b-50d OUT_DIR
python -m tasks serving-check MODEL_DIR       call a SavedModel's signature in this process
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from tasks.config import PARAM_SCHEMAS, Settings
from tasks.errors import PermanentError
from tasks.results import RollbackResult


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict", help="the most probable and the predicted genres of each description, from the served model"
    )
    predict.add_argument(
        "descriptions", nargs="*", help="movie descriptions (none: the three the TensorFlow blog post predicts)"
    )
    predict.add_argument("--top", type=int, default=2, help="how many of the most probable genres to show")
    commands.add_parser("models", help="list promoted versions")
    rollback = commands.add_parser("rollback", help="re-publish an earlier version as the newest")
    rollback.add_argument(
        "--to", type=int, default=None, dest="version", help="version to serve again (default: the previous one)"
    )
    rollback.add_argument("--reason", default="manual rollback from the command line")
    rollback.add_argument("--keep", type=int, default=PARAM_SCHEMAS["keep_versions"]["default"])
    build = commands.add_parser(
        "build-embedding-module", help="build one of the project's TF Hub text-embedding modules"
    )
    build.add_argument("module", choices=["use-m3", "glove-6b-50d"])
    build.add_argument("out_dir", type=Path)
    check = commands.add_parser("serving-check", help="call a SavedModel's serving signature on samples")
    check.add_argument("model_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        _run(args, Settings.from_env())
    except PermanentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> None:
    if args.command == "predict":
        from tasks.model.evaluate import ARTICLE_DESCRIPTIONS
        from tasks.model.predict import predict_genres, prediction_lines

        descriptions = args.descriptions or list(ARTICLE_DESCRIPTIONS)
        predictions = predict_genres(descriptions, settings.served_model_dir, args.top)
        for description, prediction in zip(descriptions, predictions, strict=True):
            print(description)
            print("\n".join(prediction_lines(prediction)))
    elif args.command == "models":
        from tasks.registry.rollback import empty_registry_message, list_models

        rows = list_models(settings.served_model_dir)
        print(_models_table(rows) if rows else empty_registry_message(settings.served_model_dir))
    elif args.command == "rollback":
        from tasks.registry.rollback import rollback_model

        result = rollback_model(
            settings.served_model_dir,
            args.version,
            actor=f"cli:{getpass.getuser()}",
            reason=args.reason,
            keep_versions=args.keep,
        )
        print(_rollback_outcome(result))
    elif args.command == "build-embedding-module":
        from tasks.embedding.modules import build_module

        print(build_module(args.module, args.out_dir))
    else:
        from tasks.model.serving_check import check_in_this_process

        print(json.dumps(check_in_this_process(args.model_dir)))


def _models_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'version':>7}  {'served':<6}  {'auc_micro':>9}  {'auc_macro':>9}  {'published':<25}  origin"]
    for row in rows:
        origin = f"rollback of {row['rollback_of']}" if row["rollback_of"] else (row["dag_run_id"] or "")
        lines.append(
            f"{row['version']:>7}  {'*' if row['serving'] else '':<6}  {_number(row['auc_micro']):>9}  "
            f"{_number(row['auc_macro']):>9}  {row['published_at'] or '':<25}  {origin}"
        )
    return "\n".join(lines)


def _rollback_outcome(result: RollbackResult) -> str:
    retired = ", ".join(str(v) for v in result["retired"]) or "none"
    return (
        f"version {result['rollback_of']} is now served as version {result['version']} "
        f"(it replaces version {result['previously_served']}); retired by retention: {retired}"
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    sys.exit(main())
