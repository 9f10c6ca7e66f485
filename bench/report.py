"""Writes the results: docs/bench/<key>.json and .png, and docs/benchmarks.md.

Each benchmark's Result is kept as JSON, and the markdown is rendered from every
JSON file present, so a run of some benchmarks (--only) keeps the others' sections.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sqlite3
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from bench.common import BENCHMARKS, Chart, Result, Row

if TYPE_CHECKING:
    from pathlib import Path


def fmt(value: float | None, digits: int = 3) -> str:
    """A number with about `digits` significant figures, thousands separated."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def met_text(met: bool | None) -> str:
    """The met column."""
    return "" if met is None else ("yes" if met else "**no**")


def machine() -> dict[str, Any]:
    """What ran the benchmarks."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = ""
    try:
        import psutil

        memory = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:
        pass

    def package(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "eventsourcing": package("eventsourcing"),
        "psycopg": package("psycopg"),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(),
    }


def postgres_version() -> str:
    """The PostgreSQL server's version, or '-' if it cannot be reached."""
    try:
        import psycopg

        from bench.common import postgres_settings

        settings = postgres_settings()
        with psycopg.connect(
            dbname=settings["POSTGRES_DBNAME"],
            host=settings["POSTGRES_HOST"],
            port=settings["POSTGRES_PORT"],
            user=settings["POSTGRES_USER"],
            password=settings["POSTGRES_PASSWORD"],
            connect_timeout=3,
        ) as connection:
            row = connection.execute("SHOW server_version").fetchone()
            return str(row[0]).split()[0] if row else "-"
    except Exception:
        return "-"


def save_result(
    result: Result,
    docs: Path,
    *,
    command: str,
    quick: bool,
    stores: tuple[str, ...],
    seconds: float,
) -> None:
    """Writes docs/bench/<key>.json and the chart docs/bench/<key>.png."""
    directory = docs / "bench"
    directory.mkdir(parents=True, exist_ok=True)
    data = asdict(result)
    data["run"] = {
        "command": command,
        "quick": quick,
        "stores": list(stores),
        "seconds": round(seconds, 1),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
    }
    (directory / f"{result.key}.json").write_text(
        json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8"
    )
    png = directory / f"{result.key}.png"
    if result.chart is not None:
        draw_chart(result.chart, png)
    else:
        png.unlink(missing_ok=True)


def load_results(docs: Path) -> list[tuple[Result, dict[str, Any]]]:
    """Every saved result, in the suite's order, with its run's details."""
    found: list[tuple[Result, dict[str, Any]]] = []
    for path in sorted((docs / "bench").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        run = data.pop("run", {})
        chart = data.pop("chart", None)
        rows = [Row(**row) for row in data.pop("rows")]
        result = Result(rows=rows, chart=Chart(**chart) if chart else None, **data)
        found.append((result, run))
    rank = {key: i for i, key in enumerate(BENCHMARKS)}
    found.sort(key=lambda item: (rank.get(item[0].key, len(BENCHMARKS)), item[0].key))
    return found


def draw_chart(chart: Chart, path: Path) -> None:
    """Draws one chart to a PNG with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        if chart.kind == "bar":
            labels = [str(x) for x in chart.x]
            count = max(1, len(chart.series))
            width = 0.8 / count
            for i, (name, values) in enumerate(chart.series.items()):
                positions = [
                    j + (i - (count - 1) / 2) * width for j in range(len(labels))
                ]
                bars = axes.bar(positions, values, width, label=name)
                axes.bar_label(
                    bars, labels=[fmt(v) for v in values], fontsize=7, padding=2
                )
            axes.set_xticks(range(len(labels)), labels, fontsize=8)
        else:
            for name, values in chart.series.items():
                axes.plot(list(chart.x), values, marker="o", label=name)
        if chart.logx:
            axes.set_xscale("symlog" if 0 in list(chart.x) else "log")
        if chart.logy:
            axes.set_yscale("log")
        axes.set_title(chart.title)
        axes.set_xlabel(chart.xlabel)
        axes.set_ylabel(chart.ylabel)
        axes.grid(visible=True, axis="y", alpha=0.3)
        if chart.series:
            axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)


def table(rows: list[Row]) -> list[str]:
    """The markdown table of one benchmark."""
    lines = [
        "| configuration | figure | limit (measured same run) | ratio | target | met |",
        "| --- | ---: | --- | ---: | --- | --- |",
    ]
    for row in rows:
        limit = (
            f"{fmt(row.limit)} {row.limit_name}".strip()
            if row.limit is not None
            else "-"
        )
        lines.append(
            f"| {row.configuration} | {fmt(row.figure)} {row.unit} | {limit} | "
            f"{fmt(row.ratio, 2)} | {row.target or '-'} | {met_text(row.met)} |"
        )
    return lines


def render(results: list[tuple[Result, dict[str, Any]]], findings: str = "") -> str:
    """The whole of docs/benchmarks.md (findings: written by hand, kept as is)."""
    now = machine()
    lines = [
        "# Benchmarks",
        "",
        "How close each path of the bank comes to what the storage underneath "
        "allows. Every figure stands next to the limit it is compared with, "
        "**measured in the same run** (the machine is shared, so absolute "
        "timings are noisy; the ratios are what to read).",
        "",
        "Reproduce with `python -m bench` (all, under 10 minutes), "
        "`python -m bench --quick` (about two minutes), `python -m bench --only "
        "NAME[,NAME]` or `python -m bench.NAME` (one); `--stores popo,sqlite,"
        "postgres` picks the stores (PostgreSQL from the `POSTGRES_*` variables, "
        'default database `test` on 127.0.0.1). Needs `pip install -e ".[bench]"`.',
        "",
        f"Machine: {now['cpu']}, {now['cores']} cores, {now['memory']} RAM, "
        f"{now['os']}; Python {now['python']}, eventsourcing {now['eventsourcing']}, "
        f"psycopg {now['psycopg']}, SQLite {now['sqlite']}, PostgreSQL "
        f"{now['postgresql']}. Each section says when and with which command it "
        "was measured.",
        "",
    ]
    summary = [
        "| benchmark | rows meeting target | run |",
        "| --- | --- | --- |",
    ]
    for result, run in results:
        targeted = [r for r in result.rows if r.met is not None]
        met = sum(1 for r in targeted if r.met)
        summary.append(
            f"| [{result.title}](#{anchor(result.title)}) | "
            f"{met}/{len(targeted)} | {run.get('date', '?')}, "
            f"{'quick' if run.get('quick') else 'full'} |"
        )
    lines += ["## Summary", "", *summary, ""]
    if findings:
        lines += [findings.strip(), ""]
    for result, run in results:
        lines += [f"## {result.title}", "", result.description, ""]
        lines += table(result.rows)
        lines.append("")
        if result.chart is not None:
            lines += [f"![{result.chart.title}](bench/{result.key}.png)", ""]
        if result.notes:
            lines += ["Notes:", ""]
            lines += [f"- {note}" for note in result.notes]
            lines.append("")
        lines += [
            f"_Measured {run.get('date', '?')} with `{run.get('command', '?')}` "
            f"(stores: {', '.join(run.get('stores', []))}; "
            f"{'quick' if run.get('quick') else 'full'} size; "
            f"took {run.get('seconds', '?')} s)._",
            "",
        ]
    return "\n".join(lines)


def anchor(title: str) -> str:
    """GitHub's anchor for a heading."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def write_report(docs: Path) -> None:
    """Renders docs/benchmarks.md from every saved result."""
    findings_path = docs / "bench" / "findings.md"
    findings = findings_path.read_text() if findings_path.exists() else ""
    (docs / "benchmarks.md").write_text(
        render(load_results(docs), findings), encoding="utf-8"
    )


def print_result(result: Result) -> None:
    """The result's table on stdout."""
    print(f"\n{result.title}")
    for line in table(result.rows):
        print(line)
    sys.stdout.flush()
