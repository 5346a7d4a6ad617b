"""The `scenegan` command line.

    scenegan data default [--n N] [--size PX] [--out DIR]   generate the embedded default dataset
    scenegan data import SRC [--out DIR]                    import a folder or .zip/.tar of photos
    scenegan data ensure                                    make sure data/raw exists (pull or generate)
    scenegan run STAGE [--set section.key=value ...]        run one stage as a Prefect flow
    scenegan pipeline [--stages ...] [--set ...]            run the stages in order as one Prefect flow
    scenegan summary                                        gallery path, metrics table, Prefect UI link
    scenegan retrain [--force]                              retrain if the dataset version changed
    scenegan serve                                          serve the retrain deployment on retrain.cron
    scenegan compare [REV ...]                              metrics per dataset version (CSV, markdown, PNG)
    scenegan fid-real DIR_A DIR_B                           FID/KID between two prepared datasets
    scenegan preset [NAME]                                  list presets, or print one as `dvc exp run` -S flags

Defaults come from params.yaml; errors a user can fix are printed as one
message (exit status 2), not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from flows.offline import keep_prefect_offline
from flows.stage import add_override_argument, add_stage_arguments, expand_preset, run_stage
from ganlib.config import load_params, preset_overrides
from ganlib.errors import UserFacingError
from ganlib.logs import plain_logger


def main(argv: Sequence[str] | None = None) -> int:
    keep_prefect_offline()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 1
    try:
        expand_preset(args)
        return args.handler(args) or 0
    except UserFacingError as exc:
        print(f"scenegan: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scenegan", description="Reproducible GAN pipeline for natural scenes.")
    commands = parser.add_subparsers(metavar="COMMAND")

    data = commands.add_parser("data", help="create, import or fetch the raw dataset").add_subparsers(metavar="ACTION")
    default = _command(data, "default", "generate the embedded procedural natural-scene dataset", data_default)
    default.add_argument("--n", type=int, help="number of images (default: data.n_images)")
    default.add_argument("--size", type=int, help="side in pixels (default: data.size)")
    default.add_argument("--seed", type=int, help="generator seed (default: data.seed)")
    default.add_argument("--out", type=Path, help="output directory (default: base.paths.raw)")
    default.add_argument("--overwrite", action="store_true", help="replace an existing non-empty directory")
    imported = _command(data, "import", "copy photos from a folder or a .zip/.tar archive", data_import)
    imported.add_argument("source", type=Path)
    imported.add_argument("--out", type=Path, help="destination (default: base.paths.raw)")
    _command(data, "ensure", "make sure the raw dataset exists: keep, pull from DVC, or generate", data_ensure)

    stage = commands.add_parser("run", help="run one stage (preprocess, train, evaluate, publish) as a flow")
    add_stage_arguments(stage)
    stage.set_defaults(handler=run_one_stage)

    pipeline = _command(commands, "pipeline", "run preprocess -> train -> evaluate -> publish as one flow", run_pipeline)
    pipeline.add_argument("--stages", nargs="+", choices=["preprocess", "train", "evaluate", "publish"],
                          help="run only these stages (default: all)")
    add_override_argument(pipeline)
    _command(commands, "summary", "print the gallery path, the metrics table and the Prefect UI link", summary)
    retrain = _command(commands, "retrain", "retrain, evaluate and publish if the dataset version changed", run_retrain)
    retrain.add_argument("--force", action="store_true", help="retrain even if the dataset version is unchanged")
    _command(commands, "serve", "serve the scheduled retrain deployment (needs PREFECT_API_URL)", serve)
    compare = _command(commands, "compare", "metrics per dataset version: git revisions, tags, DVC experiments", compare_revisions)
    compare.add_argument("revs", nargs="*", metavar="REV",
                         help="git revision, tag, branch, DVC experiment name or 'workspace' (default: every dataset version)")
    add_override_argument(compare)
    real = _command(commands, "fid-real", "FID/KID between two prepared datasets (e.g. two dataset versions)", fid_real)
    real.add_argument("dataset_a", type=Path)
    real.add_argument("dataset_b", type=Path)
    add_override_argument(real)
    preset = _command(commands, "preset", "list the presets in params.yaml, or print one as `dvc exp run` -S flags",
                      show_preset)
    preset.add_argument("name", nargs="?", help="the preset to print (default: list them)")
    return parser


def _command(subparsers, name: str, help_text: str, handler: Callable) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameter file")
    parser.set_defaults(handler=handler)
    return parser


def data_default(args: argparse.Namespace) -> int:
    from ganlib.data.scenes import write_default_dataset

    params = load_params(args.params)
    root = args.params.resolve().parent
    out = args.out or root / params.base.paths.raw
    summary = write_default_dataset(
        out,
        args.n or params.data.n_images,
        args.size or params.data.size,
        params.data.seed if args.seed is None else args.seed,
        plain_logger(),
        overwrite=args.overwrite,
    )
    print(summary)
    print(f"next: `dvc add {out}` to record this dataset version")
    return 0


def data_import(args: argparse.Namespace) -> int:
    from ganlib.data.importer import import_dataset

    params = load_params(args.params)
    out = args.out or args.params.resolve().parent / params.base.paths.raw
    summary = import_dataset(args.source, out, plain_logger())
    print(summary)
    print(f"next: `dvc add {out}` to record this dataset version, then `dvc repro`")
    return 0


def data_ensure(args: argparse.Namespace) -> int:
    from ganlib.data.raw_data import ensure_raw_data

    params = load_params(args.params)
    status = ensure_raw_data(params, args.params.resolve().parent, plain_logger())
    print(f"{status.path}: {status.origin} (data.dvc md5 {status.md5_after})")
    return 0


def run_one_stage(args: argparse.Namespace) -> int:
    return run_stage(args.stage, args.params, args.overrides)


def run_pipeline(args: argparse.Namespace) -> int:
    from flows.pipeline import ALL_STAGES, PipelineOptions, pipeline_flow

    load_params(args.params, args.overrides)  # fail fast, before a flow run starts
    options = PipelineOptions(params_file=str(args.params), stages=args.stages or ALL_STAGES, overrides=args.overrides)
    pipeline_flow(options)
    return 0


def summary(args: argparse.Namespace) -> int:
    from flows.summary import pipeline_summary

    print(pipeline_summary(load_params(args.params), args.params.resolve().parent))
    return 0


def run_retrain(args: argparse.Namespace) -> int:
    from flows.retrain import retrain_flow

    load_params(args.params)  # fail fast, before a flow run starts
    outcome = retrain_flow(params_file=str(args.params), force=args.force)
    print(f"retrain: {outcome['status']} (dataset {outcome['data_md5']})")
    return 0


def serve(args: argparse.Namespace) -> int:
    from flows.serve import serve_retrain

    serve_retrain(str(args.params))
    return 0


def compare_revisions(args: argparse.Namespace) -> int:
    from flows.compare import compare_flow
    from ganlib.metrics.report import render_table

    load_params(args.params, args.overrides)  # fail fast, before a flow run starts
    result = compare_flow(params_file=str(args.params), revs=args.revs, overrides=args.overrides)
    print(render_table(result["table"]))
    for kind, path in result["files"].items():
        print(f"{kind}: {path}")
    return 0


def fid_real(args: argparse.Namespace) -> int:
    from ganlib.metrics.evaluate import compare_datasets
    from ganlib.metrics.report import render_table

    params = load_params(args.params, args.overrides)
    comparison = compare_datasets(args.dataset_a, args.dataset_b, params, plain_logger(), args.params.resolve().parent)
    print(render_table(comparison.report_rows()))
    return 0


def show_preset(args: argparse.Namespace) -> int:
    import shlex

    params = load_params(args.params)
    if args.name is None:
        for name, values in params.presets.items():
            print(f"{name}: {', '.join(f'{key}={value}' for key, value in values.items())}")
        if params.presets:
            print('use: scenegan run train --preset NAME, or eval "dvc exp run $(scenegan preset NAME)"')
        else:
            print(f"{args.params}: no presets defined")
        return 0
    print(" ".join(f"-S {shlex.quote(expression)}" for expression in preset_overrides(params, args.name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
