"""Command line: ``amlib reproduce``, ``amlib list``, ``amlib data fetch``, ``amlib data features``."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="run an experiment (or 'all') and write results/")
    rep.add_argument("experiment")
    rep.add_argument("--profile", choices=["quick", "paper"], default=None)
    rep.add_argument("--out", default=None, help="results folder (default: results/)")
    sub.add_parser("list", help="list experiments and data files")
    data = sub.add_parser("data", help="data files")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download / verify raw data files")
    fetch.add_argument("keys", nargs="*", help="file keys (default: all)")
    feats = data_sub.add_parser("features", help="compute (or verify) the cached image features")
    feats.add_argument("names", nargs="*", help="cifar10, pets, caltech101 (default: all)")
    feats.add_argument("--network", default="efficientnet-lite0")
    args = parser.parse_args(argv)

    from .experiments import EXPERIMENTS, _load_all
    from .experiments.runner import reproduce

    _load_all()
    if args.command == "reproduce":
        names = sorted(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
        for name in names:
            reproduce(name, args.profile, args.out)
    elif args.command == "list":
        from .data import RAW_FILES

        print("experiments:", ", ".join(sorted(EXPERIMENTS)))
        print("data files:", ", ".join(sorted(RAW_FILES)))
    elif args.command == "data" and args.data_command == "features":
        from .data.features import FEATURE_DATASETS, image_features

        for name in args.names or list(FEATURE_DATASETS):
            fs = image_features(name, args.network)
            print(f"{name}: {fs.X.shape[0]} images x {fs.X.shape[1]} features, "
                  f"{ {k: len(v) for k, v in fs.split.items()} }, cache {fs.cache_path}")
    elif args.command == "data":
        from .data import RAW_FILES, fetch as fetch_file

        for key in args.keys or sorted(RAW_FILES):
            print(f"{key}: {fetch_file(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
