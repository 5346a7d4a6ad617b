"""The `scenegan` command line.

    scenegan data default [--n N] [--size PX] [--out DIR]   generate the embedded default dataset
    scenegan data import SRC [--add | --replace] [--out DIR] [--max-ratio R] [--max-bytes SIZE]
                                                            import a folder or .zip/.tar of photos
                                                            (into a non-empty DIR: --add merges, --replace swaps)
    scenegan data check [DIR]                               refuse symlinks, FIFOs, devices in data/raw (before `dvc add`)
    scenegan data ensure                                    make sure data/raw exists (pull or generate)
    scenegan run STAGE [--set section.key=value ...]        run one stage as a Prefect flow
    scenegan pipeline [--stages ...] [--set ...]            run the stages in order as one Prefect flow
    scenegan check [--stages ...] [--set ...]               check params and devices, run nothing (before dvc repro)
    scenegan summary                                        gallery path, metrics table, Prefect UI link
    scenegan retrain [--force]                              retrain if the dataset version changed
    scenegan commit-version -m MSG                          git-commit data.dvc, dvc.lock and the results together
    scenegan serve                                          serve the retrain deployment on retrain.cron
    scenegan compare [REV ...]                              metrics per dataset version (CSV, markdown, PNG)
    scenegan sweep --grid K=V1,V2 [--grid ...] | --run "K=V K=V" [--run ...] [--jobs N]
                                                            parameter sets as DVC experiments, ranked by FID
    scenegan fid-real DIR_A DIR_B                           FID/KID between two prepared datasets
    scenegan preset [NAME]                                  list presets.yaml, or print one as `dvc exp run` -S flags
    scenegan generate --out DIR|FILE.zip [--n N] [--seed S] [--truncation PSI] [--generator PATH]
                      [--class NAME|all]                    PNG images (image i: seed S+i) with a manifest.json
    scenegan generate --walk K --out walk.mp4 [--seed S]    a looping latent walk through K keyframes (MP4, else WebP)
    scenegan weights install --metric is|fd-dinov2|clip     download IS / FD_DINOv2 / CLIP weights (needs internet)

Every command ends with a short summary on stdout (counts, where the outputs
went, what to run next); with --json it prints the whole result as one JSON
document instead ({"ok": true, ...}). Progress and logs go to stderr.
Defaults come from params.yaml; errors a user can fix are printed as one
message on stderr (exit status 2; with --json also {"ok": false, "error": ...}
on stdout), not a traceback. Anything else is a bug: its traceback goes to
the log (stderr) and the message to stdout as {"ok": false, "error": ...,
"kind": "internal"} under --json (exit status 1). Both come from one
boundary, flows.boundary.run_guarded.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from flows.offline import keep_prefect_offline
from flows.boundary import run_guarded
from flows.output import CommandResult, emit
from flows.stage import add_override_argument, add_stage_arguments, check_stage_devices, expand_preset
from ganlib.config import Params, load_params, preset_overrides, presets_file
from ganlib.errors import UserFacingError
from ganlib.logs import plain_logger


# The keys of ganlib.metrics.weights.UPSTREAM_WEIGHTS (a test keeps them equal); not imported
# from there, because that module imports torch and the parser is built on every command.
WEIGHTS_METRICS = ("clip", "fd-dinov2", "is")


def main(argv: Sequence[str] | None = None) -> int:
    keep_prefect_offline()
    argv = sys.argv[1:] if argv is None else list(argv)
    # Read before parsing: a script that asked for JSON gets a document even when the arguments are wrong.
    as_json = "--json" in argv
    return run_guarded(lambda: _parse_and_run(argv), as_json)


def _parse_and_run(argv: list[str]) -> None:
    """Parse, run the command's handler and print its result; errors are run_guarded's to report."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        raise UsageError("a command is required (one of those listed above)")
    args.repeat_flags = repeat_flags(args)
    expand_preset(args)
    with _stdout_for(args.json):
        result = args.handler(args)
    emit(result, args.json)


class UsageError(UserFacingError):
    """Arguments argparse refused; the message names the command and the problem."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is raised (after the usage is printed) for main to report like any other."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        command = self.prog.removeprefix("scenegan").strip()
        raise UsageError(f"{command}: {message}" if command else message)


def build_parser() -> argparse.ArgumentParser:
    # Subparsers are made with the parent's class, so every command gets _Parser.error.
    parser = _Parser(prog="scenegan", description="Reproducible GAN pipeline for natural scenes.")
    commands = parser.add_subparsers(metavar="COMMAND")

    data = commands.add_parser("data", help="create, import or fetch the raw dataset").add_subparsers(metavar="ACTION")
    default = _command(data, "default", "generate the embedded procedural natural-scene dataset", data_default)
    default.add_argument("--n", type=_at_least(1), help="number of images (default: data.n_images)")
    default.add_argument("--size", type=_scene_size, help="side in pixels (default: data.size)")
    default.add_argument("--seed", type=_at_least(0), help="generator seed (default: data.seed)")
    default.add_argument("--out", type=_output_directory, help="output directory (default: base.paths.raw)")
    default.add_argument("--overwrite", action="store_true", help="replace an existing non-empty directory")
    imported = _command(data, "import", "copy photos from a folder or a .zip/.tar archive", data_import)
    imported.add_argument("source", type=Path)
    imported.add_argument("--out", type=_output_directory, help="destination (default: base.paths.raw)")
    # A destination that holds files needs one of these: an import never mixes datasets silently.
    existing = imported.add_mutually_exclusive_group()
    existing.add_argument("--add", dest="existing", action="store_const", const="add",
                          help="merge into the files already in the destination (same name, other content: error)")
    existing.add_argument("--replace", dest="existing", action="store_const", const="replace",
                          help="put the import in place of the destination's files once it has fully succeeded; "
                               "the summary names the DVC dataset version replaced and how to get it back")
    imported.set_defaults(existing="new")
    _add_import_limits(imported)
    check = _command(data, "check", "list symlinks, FIFOs, sockets and devices in the raw dataset folder, which "
                     "`dvc add` must not read; exit status 2 when there are any", data_check)
    check.add_argument("directory", nargs="?", type=Path, metavar="DIR", help="folder to check (default: base.paths.raw)")
    _command(data, "ensure", "make sure the raw dataset exists: keep, pull from DVC, or generate", data_ensure)

    stage = commands.add_parser("run", help="run one stage (preprocess, train, evaluate, publish) as a flow")
    add_stage_arguments(stage)
    add_json_argument(stage)
    stage.set_defaults(handler=run_one_stage)

    pipeline = _command(commands, "pipeline", "run preprocess -> train -> evaluate -> publish as one flow", run_pipeline)
    pipeline.add_argument("--stages", nargs="+", choices=["preprocess", "train", "evaluate", "publish"],
                          help="run only these stages (default: all)")
    add_override_argument(pipeline)
    check = _command(commands, "check", "check params.yaml and that the devices the stages use exist, running "
                     "nothing (before `dvc repro`, which deletes a stage's outputs before the stage can refuse)",
                     check_params)
    check.add_argument("--stages", nargs="+", choices=["preprocess", "train", "evaluate", "publish"],
                       help="check only for these stages (default: all)")
    add_override_argument(check)
    _command(commands, "summary", "print the gallery path, the metrics table and the Prefect UI link", summary)
    retrain = _command(commands, "retrain", "retrain, evaluate and publish if the dataset version changed", run_retrain)
    retrain.add_argument("--force", action="store_true", help="retrain even if the dataset version is unchanged")
    add_commit_version_command(commands)
    _command(commands, "serve", "serve the scheduled retrain deployment (needs PREFECT_API_URL)", serve)
    compare = _command(commands, "compare", "metrics per dataset version: git revisions, tags, DVC experiments", compare_revisions)
    compare.add_argument("revs", nargs="*", metavar="REV",
                         help="git revision, tag, branch, DVC experiment name or 'workspace' (default: every dataset version)")
    compare.add_argument("--wide", action="store_true",
                         help="print every column (default: what fits in 120 characters; compare.md and compare.csv have all)")
    add_override_argument(compare)
    add_sweep_command(commands)
    real = _command(commands, "fid-real", "FID/KID between two prepared datasets (e.g. two dataset versions)", fid_real)
    real.add_argument("dataset_a", type=Path)
    real.add_argument("dataset_b", type=Path)
    add_override_argument(real)
    preset = _command(commands, "preset", "list the presets in presets.yaml, or print one as `dvc exp run` -S flags",
                      show_preset)
    preset.add_argument("name", nargs="?", help="the preset to print (default: list them)")
    add_generate_command(commands)
    weights = commands.add_parser("weights", help="metric weights").add_subparsers(metavar="ACTION")
    install = _command(weights, "install", "download a metric's published weights (pinned sha256) to where evaluate "
                       "looks; `make weights` installs the FID Inception", weights_install)
    install.add_argument("--metric", required=True, type=lambda name: name.replace("_", "-"), choices=WEIGHTS_METRICS)
    return parser


def _command(subparsers, name: str, help_text: str,
             handler: Callable[[argparse.Namespace], CommandResult]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameter file")
    add_json_argument(parser)
    parser.set_defaults(handler=handler)
    return parser


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= minimum (argparse reports a bad one in a line, with the usage)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _output_directory(text: str) -> Path:
    """An argparse type: a directory to write into, refused when it (or a parent) exists as something else."""
    path = Path(text)
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            if not candidate.is_dir():
                raise argparse.ArgumentTypeError(f"{candidate} exists and is not a directory; choose another output path")
            break
    return path


def _scene_size(text: str) -> int:
    from ganlib.data.scenes import MIN_SIZE  # only imported when --size is given

    return _at_least(MIN_SIZE)(text)


def _add_import_limits(parser: argparse.ArgumentParser) -> None:
    """--max-ratio and --max-bytes: how far an archive may expand (zip bombs; ganlib.data.importer)."""
    from ganlib.data.importer import DEFAULT_MAX_RATIO, DEFAULT_MAX_TOTAL_BYTES

    parser.add_argument("--max-ratio", type=_expansion_ratio, default=DEFAULT_MAX_RATIO, metavar="R",
                        help="refuse an archive member, or archive, that expands more than R times its compressed "
                             f"size (default: {DEFAULT_MAX_RATIO:g}; photos barely compress)")
    parser.add_argument("--max-bytes", type=_byte_count, default=DEFAULT_MAX_TOTAL_BYTES, metavar="SIZE",
                        help=f"refuse an import that writes more than SIZE (e.g. 500M, 64G; default: "
                             f"{DEFAULT_MAX_TOTAL_BYTES >> 30}G, and never more than fits on the destination's disk)")


def _expansion_ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 1 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 1, got {text}")
    return value


def _byte_count(text: str) -> int:
    from ganlib.data.importer import parse_byte_size

    try:
        return parse_byte_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the whole result as one JSON document on stdout instead of the summary")


def data_default(args: argparse.Namespace) -> CommandResult:
    from flows.results import data_default_result
    from ganlib.data.scenes import write_default_dataset

    params, root = _params_and_root(args)
    raw = root / params.base.paths.raw
    summary = write_default_dataset(
        args.out or raw,
        args.n or params.data.n_images,
        args.size or params.data.size,
        params.data.seed if args.seed is None else args.seed,
        plain_logger(),
        overwrite=args.overwrite,
    )
    return data_default_result(summary, raw)


def data_import(args: argparse.Namespace) -> CommandResult:
    from flows.results import data_import_result
    from ganlib.data.importer import REPLACE, count_files, import_dataset, replaced_version

    params, root = _params_and_root(args)
    raw = root / params.base.paths.raw
    dest = args.out or raw
    # Read before the swap: afterwards the folder DVC's record describes is gone from disk.
    replaced = replaced_version(root, dest) if args.existing == REPLACE and count_files(dest) else None
    summary = import_dataset(args.source, dest, plain_logger(), max_ratio=args.max_ratio,
                             max_total_bytes=args.max_bytes, existing=args.existing)
    return data_import_result(summary, raw, replaced)


def data_check(args: argparse.Namespace) -> CommandResult:
    from flows.output import shown_path
    from flows.results import data_check_result
    from ganlib.data.raw_check import DVC_CACHE_DIR, check_raw_data

    params, root = _params_and_root(args)
    raw = root / params.base.paths.raw
    directory = args.directory or raw
    # DVC's own links into the cache (cache.type symlink) are the dataset; preprocess allows the same.
    check = check_raw_data(directory, shown_path(directory), allowed_link_targets=[root / DVC_CACHE_DIR])
    return data_check_result(check, raw)


def data_ensure(args: argparse.Namespace) -> CommandResult:
    from flows.results import data_ensure_result
    from ganlib.data.raw_data import ensure_raw_data

    params, root = _params_and_root(args)
    return data_ensure_result(ensure_raw_data(params, root, plain_logger()))


def run_one_stage(args: argparse.Namespace) -> CommandResult:
    from flows.results import stage_result
    from flows.stage import stage_flow
    from flows.server import call_with_prefect_api

    params, root = _params_and_root(args)  # bad params fail here, before a flow run (and a server) starts
    check_stage_devices(params, [args.stage])
    outcome = call_with_prefect_api(
        lambda: stage_flow(args.stage)(params_file=str(args.params), overrides=list(args.overrides)))
    return stage_result(args.stage, outcome, params, root, args.repeat_flags)


def run_pipeline(args: argparse.Namespace) -> CommandResult:
    from flows.pipeline import ALL_STAGES, PipelineOptions, pipeline_flow
    from flows.server import call_with_prefect_api
    from flows.results import pipeline_result

    params, root = _params_and_root(args)  # fail fast, before a flow run starts
    options = PipelineOptions(params_file=str(args.params), stages=args.stages or ALL_STAGES, overrides=args.overrides)
    check_stage_devices(params, options.stages)  # before the first stage, not after preprocessing
    outcomes = call_with_prefect_api(lambda: pipeline_flow(options))
    return pipeline_result(outcomes, params, root, recorded_in_dvc=options.record_in_dvc and not options.overrides)


def check_params(args: argparse.Namespace) -> CommandResult:
    from flows.stage import STAGE_FLOWS, stage_device_settings

    params, _ = _params_and_root(args)  # a ParamsError is the answer when they are not valid
    stages = args.stages or list(STAGE_FLOWS)
    check_stage_devices(params, stages)
    devices = {key: value for stage in stages for key, value in stage_device_settings(params, stage)}
    shown = ", ".join(f"{key}: {value}" for key, value in devices.items()) or "none needed"
    overrides = f" with {len(args.overrides)} override(s)" if args.overrides else ""
    return CommandResult(
        lines=[f"{args.params}{overrides}: valid for {', '.join(stages)}; devices present ({shown})"],
        data={"params": args.params, "overrides": list(args.overrides), "stages": stages, "devices": devices},
    )


def summary(args: argparse.Namespace) -> CommandResult:
    from flows.results import summary_result

    return summary_result(*_params_and_root(args))


def run_retrain(args: argparse.Namespace) -> CommandResult:
    from flows.results import retrain_result
    from flows.retrain import retrain_flow
    from flows.server import call_with_prefect_api

    # Fail fast, before a flow run starts and before `dvc exp run` deletes any stage's outputs.
    check_stage_devices(load_params(args.params), ["train", "evaluate", "publish"])
    return retrain_result(call_with_prefect_api(lambda: retrain_flow(params_file=str(args.params), force=args.force)))


def add_commit_version_command(commands: "argparse._SubParsersAction") -> None:
    committed = _command(commands, "commit-version", "git-commit the dataset version (data.dvc) with dvc.lock, the "
                         "metrics, the publish record and the retrain history; refused unless `dvc status` is clean",
                         commit_version)
    committed.add_argument("-m", "--message", required=True, help="the commit message")


def commit_version(args: argparse.Namespace) -> CommandResult:
    from flows.results import commit_version_result
    from ganlib.versions.commit import commit_version as commit

    params, root = _params_and_root(args)
    return commit_version_result(commit(params, root, args.message))


def add_generate_command(commands: "argparse._SubParsersAction") -> None:
    from ganlib.generation import defaults  # no torch: the parser is built on every command

    generate = _command(commands, "generate", "images (PNG, with a manifest.json) or a looping latent walk from the "
                        "published generator (else the trained one)", generate_from_model)
    generate.add_argument("--out", type=Path, required=True,
                          help="a directory, or FILE.zip; with --walk: walk.mp4, walk.webp or walk.gif")
    generate.add_argument("--n", type=_at_least(1), help=f"number of images (default: {defaults.DEFAULT_N})")
    generate.add_argument("--seed", type=_at_least(0), default=0,
                          help="image i uses seed SEED+i, so `--seed 1234 --n 1` remakes image 34 of `--seed 1200` "
                               "(default: 0); with --walk, keyframe k is seed SEED+k")
    generate.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                          help="scale latents by PSI in (0, 1] toward the mean: cleaner, less varied "
                               "(default: 1, none)")
    generate.add_argument("--generator", type=Path, metavar="PATH",
                          help="a generator.pt (default: the published release's, else base.paths.train's)")
    generate.add_argument("--batch", type=_at_least(1), default=defaults.DEFAULT_BATCH_SIZE,
                          help="images per generator call; the same seed gives the same bytes for the same batch, "
                               f"device and machine (default: {defaults.DEFAULT_BATCH_SIZE})")
    generate.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                          help="auto: cuda, then mps, then cpu (default: auto); the manifest records it")
    generate.add_argument("--overwrite", action="store_true", help="replace an existing --out (a directory whole)")
    generate.add_argument("--class", dest="image_class", metavar="NAME",
                          help="a class-conditional generator's class: NAME, or 'all' (every seed once per class); "
                               "default: the image of seed s is class s mod the number of classes")
    generate.add_argument("--walk", type=_at_least(2), metavar="K",
                          help="write a looping latent walk through K keyframes instead of images")
    generate.add_argument("--frames-per-keyframe", type=_at_least(1), default=defaults.DEFAULT_FRAMES_PER_KEYFRAME,
                          metavar="F", help=f"walk frames from one keyframe to the next "
                                            f"(default: {defaults.DEFAULT_FRAMES_PER_KEYFRAME})")
    generate.add_argument("--fps", type=_at_least(1), default=defaults.DEFAULT_FPS,
                          help=f"walk frames per second (default: {defaults.DEFAULT_FPS})")


def generate_from_model(args: argparse.Namespace) -> CommandResult:
    from flows.results import generate_result
    from ganlib.generation.defaults import DEFAULT_N
    from ganlib.stages.generate import GenerateRequest, generate

    if args.walk is not None and args.n is not None:
        raise UsageError("generate: --n does not apply to a walk (--walk K): a walk has K keyframes")
    if args.walk is None and args.out.suffix.lower() in (".mp4", ".webp", ".gif"):
        raise UsageError(f"generate: --out {args.out} names a video; add --walk K for a latent walk, "
                         "or give a directory or .zip for images")
    params, root = _params_and_root(args)
    request = GenerateRequest(
        out=args.out, seed=args.seed, n=args.n or DEFAULT_N, truncation=args.truncation, batch_size=args.batch,
        device=args.device, generator=args.generator, overwrite=args.overwrite, walk_keyframes=args.walk,
        frames_per_keyframe=args.frames_per_keyframe, fps=args.fps, image_class=args.image_class,
    )
    return generate_result(generate(request, params, root, plain_logger()))


def serve(args: argparse.Namespace) -> CommandResult:
    from flows.results import serve_result
    from flows.serve import serve_retrain

    params = load_params(args.params)
    serve_retrain(str(args.params))  # until interrupted
    return serve_result(params)


def compare_revisions(args: argparse.Namespace) -> CommandResult:
    from flows.compare import compare_flow
    from flows.server import call_with_prefect_api
    from flows.results import compare_result

    load_params(args.params, args.overrides)  # fail fast, before a flow run starts
    return compare_result(call_with_prefect_api(
        lambda: compare_flow(params_file=str(args.params), revs=args.revs, overrides=args.overrides)), wide=args.wide)


def add_sweep_command(commands: "argparse._SubParsersAction") -> None:
    sweep = _command(commands, "sweep", "run a grid or list of parameter sets on the current dataset version, "
                     "each a DVC experiment (`dvc exp run --temp`), and rank them by FID", run_sweep)
    sweep.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=V1,V2",
                       help="a swept key and its comma-separated values; repeatable: every combination runs")
    sweep.add_argument("--run", dest="runs", action="append", default=[], metavar="'SECTION.KEY=V ...'",
                       help="one run's settings, quoted as one argument; repeatable (instead of --grid)")
    sweep.add_argument("--jobs", type=_at_least(1), default=1,
                       help="experiments at once per device: the slots of its Prefect global concurrency limit "
                            "scenegan-sweep-DEVICE (default: 1)")
    add_override_argument(sweep)


def run_sweep(args: argparse.Namespace) -> CommandResult:
    from ganlib.versions.sweep import plan_sweep

    # Every parameter set validated, and its devices checked, before a flow run (and a server) starts.
    plan = plan_sweep(args.params, args.overrides, args.grid, args.runs)
    for params in plan.params:
        check_stage_devices(params, ["train", "evaluate"])

    from flows.results import sweep_result
    from flows.server import call_with_prefect_api
    from flows.sweep import sweep_flow

    return sweep_result(call_with_prefect_api(lambda: sweep_flow(
        params_file=str(args.params), overrides=list(args.overrides), grid=args.grid, runs=args.runs, jobs=args.jobs)))


def fid_real(args: argparse.Namespace) -> CommandResult:
    from flows.results import fid_real_result
    from ganlib.metrics.evaluate import compare_datasets

    params, root = _params_and_root(args)
    comparison = compare_datasets(args.dataset_a, args.dataset_b, params, plain_logger(), root)
    return fid_real_result(comparison, args.dataset_a, args.dataset_b)


def show_preset(args: argparse.Namespace) -> CommandResult:
    from flows.results import preset_flags_result, preset_list_result

    params = load_params(args.params)
    if args.name is None:
        overrides = {name: preset_overrides(params, name) for name in params.presets}
        return preset_list_result(params.presets, overrides, presets_file(args.params))
    return preset_flags_result(args.name, preset_overrides(params, args.name))


def weights_install(args: argparse.Namespace) -> CommandResult:
    from ganlib.metrics.weights import install_metric_weights

    params, root = _params_and_root(args)
    installed = install_metric_weights(args.metric, params, plain_logger(), root)
    metric_name = args.metric.replace("-", "_")  # as evaluate.metrics spells it
    return CommandResult(
        lines=installed.summary().splitlines(),
        data={"metric": installed.metric, "path": installed.path, "size": installed.size, "sha256": installed.sha256,
              "url": installed.url, "action": installed.action},
        next_steps=[f"add {metric_name} to evaluate.metrics, then `dvc repro evaluate`"] if args.metric != "clip" else [],
    )


def _params_and_root(args: argparse.Namespace) -> tuple[Params, Path]:
    """The validated params (with this run's overrides) and the directory their paths are relative to."""
    return load_params(args.params, getattr(args, "overrides", ())), Path(args.params).resolve().parent


def repeat_flags(args: argparse.Namespace) -> str:
    """` --params p.yaml --preset r3gan-64 --set a.b=1`: this run's options, for the next command it suggests.

    Taken before the preset is expanded into --set overrides, so it reads as the user typed it.
    """
    flags = []
    if str(args.params) != "params.yaml":
        flags += ["--params", str(args.params)]
    if getattr(args, "preset", None):
        flags += ["--preset", args.preset]
    for expression in getattr(args, "overrides", ()):
        flags += ["--set", expression]
    return "".join(f" {shlex.quote(flag)}" for flag in flags)


def _stdout_for(as_json: bool) -> contextlib.AbstractContextManager:
    # With --json stdout must hold the one JSON document: whatever the work
    # itself prints (Prefect's banners, a library's chatter) goes to stderr.
    return contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()


if __name__ == "__main__":
    sys.exit(main())
