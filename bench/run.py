"""`make bench`: every benchmark, one table, BENCHMARKS.md.

    python -m bench.run [--repeats 3] [--sizes 10000 50000 200000] [--out BENCHMARKS.md]

Builds the embedding module once (a one-off cost, reported apart), then runs, in this order: DAG parse,
embedding throughput, Airflow against direct, scale, and warm against cold (which reuses the cold runs
of the two before). Raw figures go to `<out>.json` after each benchmark; `--render` rewrites the
Markdown from that file without measuring again; `--scale-only` measures the scale benchmark again
into it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bench_airflow import measure_overhead
from bench.bench_embedding import measure_embedding
from bench.bench_parse import measure_parse
from bench.bench_retrain import measure_warm
from bench.bench_scale import SIZES, STREAMING_STAGES, measure_scale
from bench.measure import machine
from bench.sample import SHARED_SAMPLE_CSV
from tasks.embedding.modules import ensure_default_module

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = ROOT / "bench" / "FINDINGS.md"
STREAMING_GROWTH_LIMIT = 1.5  # peak RSS from the smallest to the largest file: "does not grow"


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
        "| what | goal | measured | met |",
        "|---|---|---|---|",
        *_goal_rows(results),
        "",
        *_parse_section(results["parse"]),
        *_embedding_section(results["embedding"]),
        *_airflow_section(results["airflow"]),
        *_scale_section(results["scale"]),
        *_warm_section(results["warm"]),
    ]
    if FINDINGS.is_file():
        lines += ["", FINDINGS.read_text(encoding="utf-8").strip()]
    return "\n".join(lines) + "\n"


def _goal_rows(results: dict[str, Any]) -> list[str]:
    parse = results["parse"]["files"]["movie_genre_retrain.py"]["seconds"]
    embedding = max(figures["ratio"] for figures in results["embedding"]["tf"].values())
    airflow = results["airflow"]["ratio"]
    scale = {int(rows): figures for rows, figures in results["scale"]["sizes"].items()}
    rows = [
        _goal("DAG file parse, fresh process (movie_genre_retrain.py)", "≤ 0.2 s", f"{parse:.3f} s", parse <= 0.2),
        _goal("Embedding throughput, TF module / numpy reference", "≥ 2x", f"{embedding:.2f}x", embedding >= 2),
        _goal("Through Airflow / direct, 5,000 rows end to end", "≤ 1.3x", f"{airflow:.2f}x", airflow <= 1.3),
    ]
    if 50_000 in scale:
        seconds = scale[50_000]["seconds"]
        rows.append(_goal("50k rows, cold, end to end", "≤ 5 min", f"{seconds / 60:.1f} min", seconds <= 300))
    largest = max(scale)
    peak = scale[largest]["peak_rss_mb"]
    rows.append(_goal(f"Peak RSS at {largest:,} rows", "≤ 3 GB", f"{peak / 1024:.2f} GB", peak <= 3072))
    smallest = min(scale)
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
    for warm in results["warm"]:
        rows.append(
            _goal(f"Warm retrain / cold, {warm['rows']}", "≤ 0.25", f"{warm['ratio']:.2f}", warm["ratio"] <= 0.25)
        )
        if "unchanged_ratio" in warm:  # measured since the training fingerprint exists
            ratio, goal = warm["unchanged_ratio"], warm["unchanged_goal_ratio"]
            what = f"Unchanged week / warm retrain, {warm['rows']}"
            rows.append(_goal(what, f"≤ {goal}", f"{ratio:.2f}", ratio <= goal))
    return rows


def _goal(what: str, goal: str, measured: str, met: bool) -> str:
    return f"| {what} | {goal} | {measured} | {'yes' if met else '**no**'} |"


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
        "Growth: " + "; ".join(growth) + ".",
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
    args = parser.parse_args()
    if args.render:
        results = json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8"))
    elif args.scale_only:
        results = remeasure_scale(args.out, tuple(args.sizes))
    elif args.warm_only:
        results = remeasure_warm(args.out, args.repeats)
    else:
        results = measure_all(args.out, args.repeats, tuple(args.sizes))
    markdown = render(results)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(markdown, encoding="utf-8")
    tmp.replace(args.out)
    print(markdown)


if __name__ == "__main__":
    main()
