"""`make bench`: every benchmark, one table, BENCHMARKS.md.

    python -m bench.run [--repeats 3] [--sizes 10000 50000 200000] [--out BENCHMARKS.md]

Builds the embedding module once (a one-off cost, reported apart), then runs, in this order: DAG parse,
embedding throughput, Airflow against direct, scale, warm against cold (which reuses the cold runs
of the two before), and the warm run's floor of imports. Raw figures go to `<out>.json` after each
benchmark; `--render` rewrites the Markdown from that file without measuring again; `--scale-only`,
`--warm-only` and `--floors-only` measure one benchmark again into it.

The goals table sets each figure beside its goal and, where issue 15 set one, the figure the issue
started from ("today"); the scale section adds the head's training time against its FLOP limit
(`bench/flops.py`), whose 50k-row ratio is a goal too.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bench_airflow import measure_overhead
from bench.bench_embedding import measure_embedding
from bench.bench_floors import WARM_TENSORFLOW_STAGES, measure_floors
from bench.bench_parse import measure_parse
from bench.bench_retrain import goal_ratio, measure_warm
from bench.bench_scale import (
    GOAL_OVER_FLOP_LIMIT,
    GOAL_PEAK_RSS_MB_AT_200K,
    GOAL_SECONDS,
    GOAL_TRAIN_OVER_EMBED_AT_50K,
    SIZES,
    STREAMING_STAGES,
    measure_scale,
)
from bench.measure import machine
from bench.sample import SHARED_SAMPLE_CSV
from tasks.embedding.modules import ensure_default_module

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = ROOT / "bench" / "FINDINGS.md"
STREAMING_GROWTH_LIMIT = 1.5  # peak RSS from the smallest to the largest file: "does not grow"
TODAY_AUC_MICRO = {5_000: 0.8910, 50_000: 0.8704}  # cold test micro-AUC when issue 15 was written
AUC_TOLERANCE = 0.002


def measure_all(out: Path, repeats: int, sizes: tuple[int, ...]) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "started": datetime.now(UTC).isoformat(timespec="seconds")}
    results["commit"] = _commit()
    raw = out.with_suffix(".json")

    def save() -> None:
        raw.write_text(json.dumps(results, indent=1), encoding="utf-8")

    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        module = ensure_default_module(work / "modules")["path"]
        results["module_build_seconds"] = time.perf_counter() - started
        results["parse"] = measure_parse(max(repeats, 7))
        save()
        results["embedding"] = measure_embedding(repeats=repeats, module_dir=Path(module))
        save()
        results["airflow"], cold_5k = measure_overhead(module, work / "airflow", repeats)
        save()
        results["scale"], scale_runs = measure_scale(module, work / "scale", sizes)
        save()
        results["warm"] = [measure_warm(module, SHARED_SAMPLE_CSV, work / "warm-5k", repeats, cold_5k)]
        save()
        if 50_000 in scale_runs:
            csv, cold = scale_runs[50_000]
            results["warm"].append(measure_warm(module, csv, work / "warm-50k", 1, [cold], isolate=True))
            save()
        results["floors"] = measure_floors(module, max(repeats, 5))
        save()
    results["seconds"] = time.perf_counter() - started
    save()
    return results


def remeasure_warm(out: Path, repeats: int) -> dict[str, Any]:
    """Measure warm against cold (and the unchanged week) on the shared sample again, into an earlier run's
    figures (the other sizes' warm figures stay as they were); its commit is noted beside it."""
    raw = out.with_suffix(".json")
    results = json.loads(raw.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        module = ensure_default_module(Path(scratch) / "modules")["path"]
        sample = measure_warm(module, SHARED_SAMPLE_CSV, Path(scratch) / "warm-5k", repeats)
    results["warm"] = [{**sample, "commit": _commit()}, *results["warm"][1:]]
    raw.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return results


def remeasure_scale(out: Path, sizes: tuple[int, ...]) -> dict[str, Any]:
    """Measure the scale benchmark again into an earlier run's figures; its commit is noted beside it."""
    raw = out.with_suffix(".json")
    results = json.loads(raw.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        module = ensure_default_module(Path(scratch) / "modules")["path"]
        results["scale"], _ = measure_scale(module, Path(scratch) / "scale", sizes)
    results["scale"]["commit"] = _commit()
    raw.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return results


def remeasure_floors(out: Path, repeats: int) -> dict[str, Any]:
    """Measure the warm run's floor of imports again into an earlier run's figures; its commit is noted."""
    raw = out.with_suffix(".json")
    results = json.loads(raw.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        module = ensure_default_module(Path(scratch) / "modules")["path"]
        results["floors"] = {**measure_floors(module, max(repeats, 5)), "commit": _commit()}
    raw.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return results


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`bench/run.py`) on {results['started']} at commit `{results['commit']}`, "
        f"in {results['seconds'] / 60:.0f} min.",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM, {m['os']}, Python {m['python']}; "
        f"load average at start {m['load_average_at_start']}.",
        "Times are medians of the repeats given per section; peak RSS is the whole process tree's, sampled every "
        "50 ms. Nothing in the test suite asserts a timing.",
        f"The embedding module was built once beforehand in {results['module_build_seconds']:.0f} s (a one-off "
        "cost, cached by package version).",
        "",
        "## Goals",
        "",
        "Today: issue 15's figures (from the run this file replaced), where it set a goal.",
        "",
        "| what | today | goal | measured | met |",
        "|---|---|---|---|---|",
        *_goal_rows(results),
        "",
        *_parse_section(results["parse"]),
        *_embedding_section(results["embedding"]),
        *_airflow_section(results["airflow"]),
        *_scale_section(results["scale"]),
        *_warm_section(results["warm"]),
        *_floors_section(results.get("floors"), results["warm"]),
    ]
    if FINDINGS.is_file():
        lines += ["", FINDINGS.read_text(encoding="utf-8").strip()]
    return "\n".join(lines) + "\n"


def _goal_rows(results: dict[str, Any]) -> list[str]:
    parse = results["parse"]["files"]["movie_genre_retrain.py"]["seconds"]
    embedding = max(results["embedding"]["tf"].values(), key=lambda figures: figures["ratio"])
    airflow = results["airflow"]["ratio"]
    scale = {int(rows): figures for rows, figures in results["scale"]["sizes"].items()}
    warm = {_records(figures): figures for figures in results["warm"]}
    rows = [
        _goal("DAG file parse, fresh process (movie_genre_retrain.py)", "≤ 0.2 s", f"{parse:.3f} s", parse <= 0.2),
        _goal(
            "TF encoder / numpy reference; min cosine to it, all overviews",
            "≥ 5x, cosine ≥ 0.999",
            f"{embedding['ratio']:.2f}x, {embedding['min_cosine']:.6f}",
            embedding["ratio"] >= 5 and embedding["min_cosine"] >= 0.999,
        ),
        _goal("Through Airflow / direct, 5,000 rows end to end", "≤ 1.3x", f"{airflow:.2f}x", airflow <= 1.3),
        *_speed_goals(scale, warm),
        *_memory_goals(scale),
        *_quality_goals(warm),
    ]
    for figures in results["warm"]:
        if "unchanged_ratio" in figures:  # measured since the training fingerprint exists
            ratio, goal = figures["unchanged_ratio"], figures["unchanged_goal_ratio"]
            what = f"Unchanged week / warm retrain, {figures['rows']}"
            rows.append(_goal(what, f"≤ {goal}", f"{ratio:.2f}", ratio <= goal))
    return rows


def _speed_goals(scale: dict[int, dict[str, Any]], warm: dict[int, dict[str, Any]]) -> list[str]:
    """Issue 15's speed goals; "today" is what the issue measured."""
    at_50k = scale.get(50_000)
    train_over_embed = at_50k["stages"]["train"]["seconds"] / at_50k["stages"]["embed"]["seconds"] if at_50k else None
    rows = [
        _goal(
            "Training (all candidates) / embed stage, cold, 50k rows",
            f"≤ {GOAL_TRAIN_OVER_EMBED_AT_50K}",
            None if train_over_embed is None else f"{train_over_embed:.2f}",
            train_over_embed is not None and train_over_embed <= GOAL_TRAIN_OVER_EMBED_AT_50K,
            today="5.0",
        )
    ]
    for size, today in ((50_000, "3.8 min"), (200_000, "13.4 min")):
        seconds = scale[size]["seconds"] if size in scale else None
        rows.append(
            _goal(
                f"Whole cold run, {size // 1000}k rows",
                f"≤ {GOAL_SECONDS[size] / 60:.0f} min",
                None if seconds is None else f"{seconds / 60:.1f} min",
                seconds is not None and seconds <= GOAL_SECONDS[size],
                today=today,
            )
        )
    for records, today in ((50_000, "0.45"), (5_000, "0.73")):
        figures = warm.get(records)
        ratio, goal = (figures["ratio"], goal_ratio(records)) if figures else (None, goal_ratio(records))
        rows.append(
            _goal(
                f"Warm retrain / cold, {records // 1000}k rows",
                f"≤ {goal:.2f}",
                None if ratio is None else f"{ratio:.2f}",
                ratio is not None and ratio <= goal,
                today=today,
            )
        )
    training = at_50k.get("head_training") if at_50k else None
    rows.append(
        _goal(
            "Head training / its FLOP limit, cold, 50k rows (see Scale)",
            f"stated, ≤ {GOAL_OVER_FLOP_LIMIT:.0f}x",
            f"{training['ratio']:.1f}x ({training['seconds']:.0f} s against {training['limit_seconds']:.1f} s)"
            if training
            else None,
            training is not None and training["ratio"] <= GOAL_OVER_FLOP_LIMIT,
            today="unmeasured",
        )
    )
    return rows


def _memory_goals(scale: dict[int, dict[str, Any]]) -> list[str]:
    peak = scale[200_000]["peak_rss_mb"] if 200_000 in scale else None
    rows = [
        _goal(
            "Peak RSS at 200k rows",
            f"≤ {GOAL_PEAK_RSS_MB_AT_200K / 1024:.0f} GB",
            None if peak is None else f"{peak / 1024:.2f} GB",
            peak is not None and peak <= GOAL_PEAK_RSS_MB_AT_200K,
            today="2.7 GB",
        )
    ]
    smallest, largest = min(scale), max(scale)
    for stage in STREAMING_STAGES:
        growth = scale[largest]["stages"][stage]["peak_rss_mb"] / scale[smallest]["stages"][stage]["peak_rss_mb"]
        rows.append(
            _goal(
                f"{stage}: memory flat from {smallest:,} to {largest:,} rows",
                f"peak RSS ≤ {STREAMING_GROWTH_LIMIT}x ",
                f"{growth:.2f}x ({scale[smallest]['stages'][stage]['peak_rss_mb']:.0f} → "
                f"{scale[largest]['stages'][stage]['peak_rss_mb']:.0f} MB)",
                growth <= STREAMING_GROWTH_LIMIT,
            )
        )
    return rows


def _quality_goals(warm: dict[int, dict[str, Any]]) -> list[str]:
    """Quality must not drop: the cold run's test micro-AUC at most AUC_TOLERANCE below issue 15's."""
    rows = []
    for records, today in TODAY_AUC_MICRO.items():
        figures = warm.get(records)
        auc = figures["auc_micro"]["cold"] if figures else None
        floor = today - AUC_TOLERANCE
        what = "shared sample (5k)" if records == 5_000 else f"{records // 1000}k rows"
        rows.append(
            _goal(
                f"Test micro-AUC, cold, {what}",
                f"≥ {floor:.4f} (within {AUC_TOLERANCE} of today's)",
                None if auc is None else f"{auc:.4f}",
                auc is not None and auc >= floor,
                today=f"{today:.4f}",
            )
        )
    return rows


def _records(warm: dict[str, Any]) -> int:
    """The CSV records of a warm benchmark's file (figures written before `records` was: from its name)."""
    if "records" in warm:
        return int(warm["records"])
    found = re.search(r"(\d+)\.csv$", warm["rows"])
    return int(found.group(1)) if found else 0


def _goal(what: str, goal: str, measured: str | None, met: bool, today: str = "") -> str:
    """A goals-table row; `measured` None: not measured in these figures (e.g. a size left out)."""
    if measured is None:
        return f"| {what} | {today} | {goal} | not measured | |"
    return f"| {what} | {today} | {goal} | {measured} | {'yes' if met else '**no**'} |"


def _parse_section(parse: dict[str, Any]) -> list[str]:
    rows = [
        f"| {label} | {figures['seconds']:.3f} | {', '.join(figures['heavy_imports']) or 'none'} |"
        for label, figures in parse["files"].items()
    ]
    return [
        f"## DAG file parse ({parse['repeats']} fresh processes per file)",
        "",
        "A fresh process imports Airflow's DagBag (the dag-processor has Airflow loaded), then parses one file.",
        "",
        "| file | seconds | heavy libraries imported |",
        "|---|---|---|",
        *rows,
        "",
    ]


def _embedding_section(embedding: dict[str, Any]) -> list[str]:
    reference = embedding["numpy"]
    rows = [f"| numpy reference ({reference['package']}) | | {reference['texts_per_second']:.0f} | 1.00x | |"]
    rows += [
        f"| TF module | {batch} | {figures['texts_per_second']:.0f} | {figures['ratio']:.2f}x | "
        f"{figures['min_cosine']:.6f} |"
        for batch, figures in embedding["tf"].items()
    ]
    return [
        f"## Embedding throughput ({embedding['texts']:,} real overviews, {embedding['repeats']} passes)",
        "",
        "| encoder | batch | texts/s | against numpy | min cosine to numpy |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def _stage_table(columns: dict[str, dict[str, Any]]) -> list[str]:
    """Per-stage seconds and peak RSS, one column pair per run kind or size."""
    stages = list(dict.fromkeys(stage for figures in columns.values() for stage in figures["stages"]))
    header = "| stage | " + " | ".join(f"{name} s | {name} peak MB" for name in columns) + " |"
    lines = [header, "|---|" + "---|---|" * len(columns)]
    for stage in stages:
        cells = []
        for figures in columns.values():
            stage_figures = figures["stages"].get(stage)
            cells += (
                [f"{stage_figures['seconds']:.1f}", f"{stage_figures['peak_rss_mb']:.0f}"]
                if stage_figures
                else ["", ""]
            )
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    totals = [
        cell for figures in columns.values() for cell in (f"{figures['seconds']:.1f}", f"{figures['peak_rss_mb']:.0f}")
    ]
    lines.append("| **whole process** | " + " | ".join(f"**{cell}**" for cell in totals) + " |")
    return lines


def _airflow_section(airflow: dict[str, Any]) -> list[str]:
    return [
        f"## Through Airflow against direct ({airflow['rows']}, {airflow['repeats']} runs each)",
        "",
        "Airflow: `airflow dags test` in a fresh process (what `make run` does; tasks run in that process). "
        "Direct: `bench/pipeline.py`, the same stage functions in one process. Both cold: empty cache, no served "
        f"model, default params (two candidates). Ratio of the medians: **{airflow['ratio']:.2f}x**.",
        "",
        *_stage_table({"Airflow": airflow["airflow"], "direct": airflow["direct"]}),
        "",
    ]


def _scale_section(scale: dict[str, Any]) -> list[str]:
    sizes = {int(rows): figures for rows, figures in scale["sizes"].items()}
    ordered = sorted(sizes)
    growth = [
        f"{before:,} → {after:,} rows: time x{sizes[after]['seconds'] / sizes[before]['seconds']:.2f}, "
        f"peak RSS x{sizes[after]['peak_rss_mb'] / sizes[before]['peak_rss_mb']:.2f}"
        for before, after in itertools.pairwise(ordered)
    ]
    remeasured = f" (measured again at commit `{scale['commit']}`)" if "commit" in scale else ""
    return [
        f"## Scale (one cold run per size, each stage in a process of its own){remeasured}",
        "",
        "Real records scaled up by `bench/synthetic.py`: new ids, each overview recombined from real sentences "
        "of movies sharing its first genre. "
        + ", ".join(f"{rows:,} rows = {sizes[rows]['csv_mb']:.0f} MB" for rows in ordered)
        + ".",
        "",
        *_stage_table({f"{rows // 1000}k": sizes[rows] for rows in ordered}),
        "",
        *(["Growth: " + "; ".join(growth) + ".", ""] if growth else []),
        *_flop_lines(scale, sizes),
    ]


def _flop_lines(scale: dict[str, Any], sizes: dict[int, dict[str, Any]]) -> list[str]:
    """Each size's head training against its FLOP limit (`bench.flops`); nothing for figures written before."""
    measured = {
        rows: figures["head_training"] for rows, figures in sorted(sizes.items()) if figures.get("head_training")
    }
    if not measured:
        return []
    peak = scale["peak_flops"]
    rows = [
        f"| {size // 1000}k | {candidate['index']} | {'yes' if candidate['wide'] else 'no'} | "
        f"{candidate['weights_per_example']:,.0f} | {candidate['tfidf_nnz']:.0f} | {candidate['train_rows']:,} | "
        f"{candidate['epochs_run']} | {candidate['flops'] / 1e12:.2f} | {candidate['seconds']:.1f} |"
        for size, training in measured.items()
        for candidate in training["candidates"]
    ]
    totals = "; ".join(
        f"{size // 1000}k: {training['seconds']:.0f} s against {training['limit_seconds']:.1f} s, "
        f"**{training['ratio']:.1f}x**"
        for size, training in measured.items()
    )
    return [
        "### Head training against its FLOP limit",
        "",
        f"Peak: {peak['cores']} cores x {peak['ghz']:.2f} GHz x {peak['fp32_lanes']} fp32 lanes x 2 (FMA) x "
        f"{peak['fma_units_per_core']} FMA unit(s) a core = **{peak['gflops']:.0f} GFLOP/s**. Work: epochs x "
        "(train rows x 6 + validation rows x 2) x weights a row touches (deep: dims x hidden + hidden x genres; "
        "wide: TF-IDF non-zeros x genres); see `bench/flops.py`. Seconds are each candidate's training.json "
        "(embedding lookup, fitting, threshold tuning, export).",
        "",
        "| size | candidate | wide | weights / row | TF-IDF nnz | train rows | epochs | TFLOP | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Measured / limit: {totals}.",
        "",
    ]


def _warm_section(warm_runs: list[dict[str, Any]]) -> list[str]:
    lines = ["## Warm retrain against cold", ""]
    lines.append(
        "Cold: fresh home, every description embedded, every candidate trained. Warm: last week's file (a stable "
        "95% of the records) ran and promoted first; this week's adds the other 5%: only those are embedded and "
        "the served model is fine-tuned. Unchanged: this week's file once more in the same home; its training "
        "fingerprint equals the served version's, so the run ends after `fingerprint` and promotes nothing."
    )
    for warm in warm_runs:
        lines += [
            "",
            f"### {warm['rows']} (cold {warm['repeats']['cold']} runs, warm {warm['repeats']['warm']}"
            + ("; each stage in a process of its own)" if warm.get("isolated_stages") else "; one process)")
            + (f", measured again at commit `{warm['commit']}`" if "commit" in warm else ""),
            "",
            f"warm / cold = **{warm['ratio']:.2f}**; descriptions embedded {warm['embedded']['cold']:,} cold, "
            f"{warm['embedded']['warm']:,} warm; test micro-AUC {warm['auc_micro']['cold']:.4f} cold, "
            f"{warm['auc_micro']['warm']:.4f} warm; warm runs fine-tuned the served model: {warm['warm_started']}.",
            "",
            *_unchanged_lines(warm),
            *_stage_table({name: warm[name] for name in ("cold", "warm", "unchanged") if name in warm}),
        ]
    return [*lines, ""]


def _floors_section(floors: dict[str, Any] | None, warm_runs: list[dict[str, Any]]) -> list[str]:
    """The imports a warm run pays whatever its stages do (`bench/bench_floors.py`), against each cold run."""
    if floors is None:
        return []
    seconds, imports = floors["seconds"], floors["imports"]
    lines = [
        f"## Warm floor: imports in fresh processes ({floors['repeats']} runs each"
        + (f", measured at commit `{floors['commit']}`)" if "commit" in floors else ")"),
        "",
        f"Importing TensorFlow as a stage does: {imports['tensorflow']:.2f} s; Great Expectations: "
        f"{imports['great_expectations']:.2f} s; both in one process: {imports['both']:.2f} s (each over a "
        f"process that has imported `tasks.pipeline`, {seconds['pipeline']:.2f} s); the serving check's fresh "
        f"interpreter, at the least (TensorFlow and the embedding module loaded): "
        f"{seconds['serving_interpreter']:.2f} s. A warm run imports TensorFlow in "
        f"{', '.join(WARM_TENSORFLOW_STAGES)} (once in all when the run is one process), Great Expectations in "
        "validate, and starts the serving check's interpreter.",
        "",
        "| warm run | floor s | cold s | floor / cold | goal (warm / cold) | left for the work |",
        "|---|---|---|---|---|---|",
    ]
    for warm in warm_runs:
        floor = floors["floors"]["process_per_stage" if warm.get("isolated_stages") else "one_process"]
        cold, goal = warm["cold"]["seconds"], warm["goal_ratio"]
        lines.append(
            f"| {warm['rows']} | {floor:.1f} | {cold:.1f} | {floor / cold:.2f} | ≤ {goal:.2f} | "
            f"{goal * cold - floor:.1f} s |"
        )
    return [*lines, ""]


def _unchanged_lines(warm: dict[str, Any]) -> list[str]:
    if "unchanged" not in warm:
        return []
    ratio, goal = warm["unchanged_ratio"], warm["unchanged_goal_ratio"]
    return [f"unchanged week / warm = **{ratio:.2f}** (goal ≤ {goal}).", ""]


def _commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return found.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--render", action="store_true", help="only rewrite the Markdown from <out>.json")
    parser.add_argument("--scale-only", action="store_true", help="measure only the scale benchmark again")
    parser.add_argument(
        "--warm-only", action="store_true", help="measure only warm against cold on the shared sample again"
    )
    parser.add_argument("--floors-only", action="store_true", help="measure only the warm run's floor again")
    args = parser.parse_args()
    if args.render:
        results = json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8"))
    elif args.scale_only:
        results = remeasure_scale(args.out, tuple(args.sizes))
    elif args.warm_only:
        results = remeasure_warm(args.out, args.repeats)
    elif args.floors_only:
        results = remeasure_floors(args.out, args.repeats)
    else:
        results = measure_all(args.out, args.repeats, tuple(args.sizes))
    markdown = render(results)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(markdown, encoding="utf-8")
    tmp.replace(args.out)
    print(markdown)


if __name__ == "__main__":
    main()
