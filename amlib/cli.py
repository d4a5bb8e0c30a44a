"""Command line of amlib: reproduce the papers' results, list experiments, fetch data.

Examples::

    amlib list
    amlib reproduce am-table3 --profile paper --force   # replace the committed results
    amlib reproduce all                                  # quick profile, into results/*.quick.json
    amlib reproduce am-pvalues --profile paper --backend dask --scheduler tcp://host:8786
    amlib data fetch german-credit

A user error (unknown experiment or data file, bad profile or output folder, missing data)
prints one line and exits with status 2; Ctrl-C says how many trials are cached and how to resume.
"""
from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amlib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "reproduce", help="run an experiment (or 'all') and write its results file",
        description="Run an experiment and write its results with provenance. The paper "
                    "profile writes results/NAME.json (the committed results, replaced only "
                    "with --force); the quick profile writes results/NAME.quick.json.")
    rep.add_argument("experiment", help="an experiment name from 'amlib list', or 'all'")
    rep.add_argument("--profile", choices=["quick", "paper"], default=None,
                     help="quick (default; small, minutes) or paper (the papers' settings); "
                          "AMLIB_PROFILE sets the default")
    rep.add_argument("--out", default=None,
                     help="results folder (default: results/ in the current directory)")
    rep.add_argument("--force", action="store_true",
                     help="replace existing paper-profile results")
    rep.add_argument("--backend", choices=["local", "dask", "ray"], default="local",
                     help="where trials run: local processes (default), a Dask or a Ray cluster")
    rep.add_argument("--scheduler", default=None,
                     help="address of an existing Dask scheduler or Ray head (default: start a "
                          "local cluster)")
    sub.add_parser("list", help="list experiments (what each reproduces, profiles, wall time, "
                                "results file) and data files")
    data = sub.add_parser("data", help="data files")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download / verify raw data files; reports every "
                                              "file that fails, then exits 2")
    fetch.add_argument("keys", nargs="*", help="file keys (default: all)")
    return parser


def _list() -> None:
    from .data import RAW_FILES
    from .experiments import EXPERIMENT_INFO, EXPERIMENTS, PROFILES

    print("experiments (profiles: " + ", ".join(PROFILES) + "):")
    for name in sorted(EXPERIMENTS):
        info = EXPERIMENT_INFO.get(name)
        what = info.reproduces if info else "(no description)"
        wall = info.wall_time if info else "?"
        resumes = "resumes when interrupted" if (info is None or info.resumable) else \
            "reruns from the start when interrupted"
        print(f"  {name:<20} {what}\n  {'':<20} paper profile ~{wall} on 2 cores; {resumes}; "
              f"results/{name}.json (quick: results/{name}.quick.json)")
    print("data files:", ", ".join(sorted(RAW_FILES)))


def _fetch(keys: list[str]) -> int:
    from .data import RAW_FILES, DataFileError, fetch as fetch_file

    failed = 0
    for key in keys or sorted(RAW_FILES):
        try:
            print(f"{key}: {fetch_file(key)}")
        except (DataFileError, KeyError) as error:
            failed += 1
            print(f"{key}: FAILED: {error}", file=sys.stderr)
    if failed:
        print(f"amlib: {failed} data file(s) could not be fetched or verified", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _interrupted() -> int:
    from .experiments.trials import default_cache

    folder = default_cache()
    cached = sum(1 for _ in folder.rglob("*.json")) if folder.is_dir() else 0
    print(f"\namlib: interrupted. {cached} finished trial(s) are cached in {folder}; rerun the "
          "same command to resume from them.", file=sys.stderr)
    return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .data import DataFileError
    from .experiments import EXPERIMENTS, UnknownExperimentError, UnknownProfileError, _load_all
    from .experiments.runner import OutputPathError, ResultsExistError, reproduce

    try:
        _load_all()
        if args.command == "reproduce":
            names = sorted(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
            for name in names:
                reproduce(name, args.profile, args.out, force=args.force, backend=args.backend,
                          scheduler=args.scheduler)
        elif args.command == "list":
            _list()
        elif args.command == "data":
            return _fetch(args.keys)
    except (UnknownExperimentError, UnknownProfileError, OutputPathError, ResultsExistError,
            DataFileError) as error:
        print(f"amlib: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return _interrupted()
    return 0


if __name__ == "__main__":
    sys.exit(main())
