"""The one command: runs the benchmarks and writes docs/benchmarks.md with charts.

python -m bench                       # every benchmark, under 10 minutes
python -m bench --quick               # about two minutes
python -m bench --only limits,simple  # some; the others' sections are kept
python -m bench --stores popo,sqlite
python -m bench.limits --quick        # one benchmark alone
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # `python bench/run.py`: put the repository first on the path, and not bench/
    # (whose http.py would shadow the standard library's http package).
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import importlib
import shlex
import tempfile
import time
import traceback
from typing import TYPE_CHECKING

from bench.common import BENCHMARKS, SYSTEM_STORES, Options

if TYPE_CHECKING:
    from collections.abc import Sequence

REPOSITORY = Path(__file__).resolve().parent.parent
DOCS = REPOSITORY / "docs"


def parse_args(
    argv: Sequence[str] | None, *, one: str | None = None
) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog=f"python -m bench.{one}" if one else "python -m bench",
        description="Runs benchmarks; writes docs/benchmarks.md and docs/bench/*.png.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (about two minutes)"
    )
    if one is None:
        parser.add_argument(
            "--only", default="", help=f"comma-separated: {','.join(BENCHMARKS)}"
        )
    parser.add_argument(
        "--stores",
        default=",".join(SYSTEM_STORES),
        help=f"comma-separated: {','.join(SYSTEM_STORES)}",
    )
    parser.add_argument(
        "--docs", type=Path, default=DOCS, help="where benchmarks.md and bench/ go"
    )
    parser.add_argument(
        "--no-report", action="store_true", help="print results, write no files"
    )
    args = parser.parse_args(argv)
    stores = tuple(s for s in args.stores.split(",") if s)
    unknown = set(stores) - set(SYSTEM_STORES)
    if unknown:
        parser.error(f"unknown stores: {', '.join(sorted(unknown))}")
    args.stores = stores
    if one is not None:
        args.only = [one]
    else:
        names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
        unknown = set(names) - set(BENCHMARKS)
        if unknown:
            parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
        args.only = [n for n in BENCHMARKS if n in names]
    return args


def make_progress(started: float) -> object:
    """A progress function that stamps each line with the elapsed time."""

    def progress(text: str) -> None:
        print(
            f"[{time.perf_counter() - started:6.1f}s] {text}",
            file=sys.stderr,
            flush=True,
        )

    return progress


def run_benchmarks(args: argparse.Namespace, command: str) -> int:
    """Runs the chosen benchmarks; saves each result; renders the report."""
    from bench import report

    started = time.perf_counter()
    progress = make_progress(started)
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for name in args.only:
            options = Options(
                quick=args.quick,
                stores=args.stores,
                workdir=Path(tmp) / name,
                progress=progress,  # type: ignore[arg-type]
            )
            options.workdir.mkdir(parents=True, exist_ok=True)
            try:
                module = importlib.import_module(f"bench.{name}")
            except ModuleNotFoundError as error:
                if error.name != f"bench.{name}":
                    raise
                progress(f"skipping {name}: bench/{name}.py does not exist yet")
                failed.append(name)
                continue
            progress(f"== {name} ==")
            began = time.perf_counter()
            try:
                result = module.run(options)
            except Exception:
                progress(f"skipping {name}: it raised\n{traceback.format_exc()}")
                failed.append(name)
                continue
            seconds = time.perf_counter() - began
            progress(f"== {name} done in {seconds:.0f}s ==")
            report.print_result(result)
            if not args.no_report:
                report.save_result(
                    result,
                    args.docs,
                    command=command,
                    quick=args.quick,
                    stores=args.stores,
                    seconds=seconds,
                )
    if not args.no_report:
        report.write_report(args.docs)
        progress(f"wrote {args.docs / 'benchmarks.md'}")
    total = time.perf_counter() - started
    progress(
        f"finished in {total:.0f}s"
        + (f"; skipped: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench`: every benchmark, or those given with --only."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    return run_benchmarks(args, shlex.join(["python", "-m", "bench", *argv]))


def main_one(name: str, argv: Sequence[str] | None = None) -> None:
    """`python -m bench.NAME`: one benchmark alone (exits with its status)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv, one=name)
    sys.exit(run_benchmarks(args, shlex.join(["python", "-m", f"bench.{name}", *argv])))


if __name__ == "__main__":
    sys.exit(main())
