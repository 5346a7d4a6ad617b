"""The training stage: prepared dataset -> trained EMA generator, stats and sample grids.

    train_gan(params, log, root) -> TrainSummary

Length is counted in images shown (kimg). Every `tick_kimg` the loop does
its upkeep (rank 0, while the other ranks wait in a barrier): recalibrate the
EMA generator's BatchNorm statistics (ganlib/training/ema.py), log progress,
evaluate the EMA generator on fixed latents (grid PNG + collapse indicator),
append to stats.jsonl and write a checkpoint. A
run's working files live in its checkpoint directory
(`<checkpoints>/<fingerprint>/`: ckpt-*.pt, stats.jsonl, samples/), which
survives interruptions; only a finished run is published, all at once, to
`base.paths.train`:

    generator.pt     EMA generator (ganlib/models/generator_file.py)
    stats.jsonl      one JSON object per tick (the stage's dvclive log draws it: ganlib/stages/train_curves.py)
    samples/         grid-<kimg>.png per tick, final.png
    params.json      the parameters the run used

Class-conditional training (`train.conditional`, ganlib/models/conditioning.py):
`auto` resolves, before anything is named, to whether the prepared data has
class labels; the run's identity then covers the labels and the class names,
and the generator file records the classes. `train.class_balanced` draws real
batches with every class equally often (ClassBalancedSampler).

Resuming: a rerun with the same parameters, data and weight-shaping code
continues from the newest checkpoint of its run (`train.resume: auto`);
`resume_from=PATH` continues from a given checkpoint and refuses one made
with other parameters, data or code. When only the code changed, the log
names the files and a new run starts, unless `train.resume:
accept_code_change` asks to continue the newest checkpoint of the same
parameters and data; stats.jsonl (`code_digest` per tick) and params.json
(`run.code_changes`) then record both digests. `precision: auto` is decided
once per run: a run that has checkpoints continues with the precision they
were made with, whatever the speed probe would say today.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ganlib.config import STAGE_PARAMS, Params, TrainParams, write_resolved_params
from ganlib.data.dataset import PreparedDataset, open_prepared
from ganlib.errors import UserFacingError
from ganlib.hardware.device import resolve_device
from ganlib.hardware.machine import machine_cache_dir
from ganlib.hardware.probe import current_load
from ganlib.io.atomic import atomic_write_bytes, atomic_write_text, staged_directory
from ganlib.io.source import CodeDigest
from ganlib.logs import Logger
from ganlib.models.generator_file import GeneratorInfo, save_generator
from ganlib.models.registry import architecture, generator_kwargs
from ganlib.training.checkpoint import (
    CODE_KEY,
    RUN_RECORD_FILE,
    CheckpointError,
    CorruptCheckpointError,
    RunIdentity,
    RunRecord,
    capture_rng_state,
    changed_code_files,
    check_compatible,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    run_identity,
    run_records,
    same_run_but_code,
    save_checkpoint,
    set_aside_corrupt,
    training_code,
    write_run_record,
)
from ganlib.training.divergence import DIVERGED_TICKS, diverged_loss
from ganlib.training.distributed import (
    SINGLE_PROCESS,
    World,
    all_gather_object,
    barrier,
    broadcast_module_,
    broadcast_object,
    check_shared_directories,
    init_process_group,
)
from ganlib.training.ema import recalibrate_batchnorm_, recalibration_latents
from ganlib.training.monitor import TickMonitor
from ganlib.training.real_batches import ClassBalancedSampler, EpochSampler, RealImages, RealLabels
from ganlib.training.speed import TrainSpeed, resolve_train_speed
from ganlib.training.step import GanNetworks, GanStep, build_networks
from ganlib.training.throughput import ThroughputWatch, busy_machine_warning

GENERATOR_FILE = "generator.pt"
STATS_FILE = "stats.jsonl"
SAMPLES_DIR = "samples"


class NonFiniteLossError(UserFacingError, RuntimeError):
    """A loss or gradient became NaN/inf; no checkpoint was written after it."""


class DivergedError(UserFacingError, RuntimeError):
    """The losses stayed finite but beyond any healthy value for several ticks (ganlib/training/divergence.py)."""


@dataclass(frozen=True)
class TickReport:
    tick: int
    kimg: float
    total_kimg: float
    img_per_s: float
    eta_s: float
    losses: dict[str, float]     # loss_d, loss_g, penalty (means over the tick), skipped_steps
    diversity: float             # mean pairwise distance of fixed-latent samples
    diversity_ratio: float       # ... relative to real images: ~1 healthy, -> 0 collapse
    grid_path: Path
    generator: nn.Module         # the EMA generator, eval mode; read it, do not train it
    run_dir: Path                # the run's working directory: a hook's *.csv here is published with the outputs
    classes: tuple[str, ...] = ()  # a conditional generator's class names, in label order


@dataclass(frozen=True)
class TrainSummary:
    out_dir: Path
    generator_path: Path
    run_dir: Path
    kimg: float
    steps: int
    ticks: int
    resumed_from: Path | None


@dataclass
class Progress:
    """Counters that a checkpoint restores; `history` holds one stats record per tick."""

    nimg: int = 0
    step: int = 0
    last_tick_nimg: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    code_changes: list[dict[str, Any]] = field(default_factory=list)  # accepted with train.resume: accept_code_change
    diverged_ticks: int = 0  # consecutive ticks whose losses were beyond divergence.py's bound


def train_gan(
    params: Params,
    log: Logger,
    root: Path,
    *,
    on_tick: Callable[[TickReport], None] | None = None,
    resume_from: Path | None = None,
    world: World = SINGLE_PROCESS,
) -> TrainSummary:
    """Train (or continue training) the GAN of `params` on the prepared dataset under `root`."""
    cfg = params.train
    root = Path(root)
    dataset = open_prepared(root / params.base.paths.prepared)
    architecture(cfg.arch, dataset.resolution)
    _check_launch(cfg, world, resume_from)
    classes = _training_classes(cfg, dataset)
    params = _with_conditional(params, bool(classes))
    data_key = training_data_key(dataset, classes)
    device = _training_device(params.base.device, world)
    init_process_group(world, device)
    _configure_backends(cfg, device)
    code = training_code()
    checkpoints_root = root / params.base.paths.checkpoints
    # precision/channels_last `auto` become concrete here, before anything is seeded or
    # named: the run's identity, params.json and stats record what actually ran.
    speed = broadcast_object(
        _settle_speed(params, dataset, data_key, device, code, checkpoints_root) if world.is_main else None, world)
    log.info("train: precision %s, channels_last %s (%s)", speed.precision, speed.channels_last, speed.how)
    params = _with_speed(params, speed)
    cfg = params.train

    identity = run_identity(params, data_key, code)
    run_dir = checkpoints_root / identity.fingerprint
    out_dir = root / params.base.paths.train
    _check_same_run(identity, world)
    # Every rank resumes from the checkpoints rank 0 writes, and rank 0 (any node, under c10d)
    # publishes into out_dir's parent (staged_directory): refuse now rather than resume from
    # different checkpoints per node or leave the outputs on a disk nobody expects.
    check_shared_directories(
        {"base.paths.checkpoints": run_dir, "base.paths.train (its parent)": out_dir.parent}, world)
    images_per_step = cfg.batch_size * cfg.d_steps
    stop_nimg = math.ceil(cfg.kimg * 1000 / images_per_step) * images_per_step

    nets = build_networks(cfg, dataset.resolution, device, params.base.seed, len(classes))
    sampler = _real_sampler(cfg, dataset, params.base.seed)
    start, record = _starting_checkpoint(cfg, identity, run_dir, resume_from, world, log)
    progress = _restore(start, record, identity, stop_nimg, nets, sampler, log, cfg.resume == "accept_code_change") \
        if start else Progress()
    if start is None:
        log.info("train: starting from scratch in %s (%s, %d images of %d px, %s)",
                 run_dir, cfg.arch, dataset.count, dataset.resolution, device)
    if classes:
        log.info("train: class-conditional on %d classes (%s)%s", len(classes), ", ".join(classes),
                 ", class-balanced batches" if cfg.class_balanced else "")
    for module in (nets.G, nets.D, nets.G_ema):
        broadcast_module_(module, world)
    barrier(world)  # every process has read its checkpoint before rank 0 writes new ones

    step = GanStep(nets, cfg, params.base.seed, device, world)
    real_images = RealImages(dataset.images, device, cfg.data_on_device, cfg.channels_last, log)
    real_labels = RealLabels(dataset.labels, device) if classes else None
    monitor = _monitor(params, dataset, device, len(classes)) if world.is_main else None
    throughput = _throughput_watch(device, log) if world.is_main else None
    tick_start_time, tick_start_nimg = time.perf_counter(), progress.nimg

    while progress.nimg < stop_nimg:
        batches = [sampler.take(cfg.batch_size) for _ in range(cfg.d_steps)]
        reals = [_my_reals(real_images, indices, step) for indices in batches]
        labels = [_my_reals(real_labels, indices, step) for indices in batches] if real_labels else None
        progress.nimg += images_per_step
        step.run(progress.step, reals, progress.nimg, labels)
        progress.step += 1
        tick_due = progress.nimg >= progress.last_tick_nimg + cfg.tick_kimg * 1000 or progress.nimg >= stop_nimg
        if tick_due or progress.step % cfg.check_finite_every == 0:
            _raise_if_nonfinite(step, run_dir, images_per_step)
        if not tick_due:
            continue
        seconds = time.perf_counter() - tick_start_time
        img_per_s = (progress.nimg - tick_start_nimg) / max(seconds, 1e-9)
        losses = step.take_totals()
        _stop_if_diverged(cfg.loss, losses, progress, run_dir)
        progress.last_tick_nimg = progress.nimg
        if monitor is not None:
            report = _upkeep(params, identity, run_dir, nets, sampler, progress, monitor, losses, img_per_s, stop_nimg,
                             speed, classes)
            log.info(_progress_line(report))
            if throughput is not None and (warning := throughput.observe(img_per_s)):
                log.warning(warning)
            if on_tick is not None:
                on_tick(report)
        # The other ranks wait here for rank 0's upkeep (grid, checkpoint, FID curve: seconds to minutes),
        # at a named point rather than inside the next step's gradient all-reduce, so that a timeout
        # (distributed.PROCESS_GROUP_TIMEOUT) or a hang points at upkeep, and every rank's tick clock
        # restarts together.
        barrier(world)
        tick_start_time, tick_start_nimg = time.perf_counter(), progress.nimg

    if world.is_main:
        _publish(params, identity, dataset, classes, nets, progress, speed, run_dir, out_dir)
        log.info("train: %.1f kimg done; generator and stats in %s", progress.nimg / 1000, out_dir)
    barrier(world)
    return TrainSummary(
        out_dir=out_dir, generator_path=out_dir / GENERATOR_FILE, run_dir=run_dir, kimg=progress.nimg / 1000,
        steps=progress.step, ticks=len(progress.history), resumed_from=start,
    )


# ---------------------------------------------------------------------- setup


def _check_launch(cfg: TrainParams, world: World, resume_from: Path | None) -> None:
    expected = cfg.nnodes * cfg.nproc
    if world.size != expected:
        how = ("launch it with torchrun: python -m ganlib.stages.train starts it "
               "(ganlib.training.launch.launch_command)" if expected > 1
               else "set train.nproc (processes per node) and train.nnodes to the launch's layout")
        layout = f" on each of train.nnodes {cfg.nnodes} nodes ({expected} processes)" if cfg.nnodes > 1 else ""
        raise UserFacingError(f"train.nproc is {cfg.nproc}{layout} but this run has {world.size} process(es); {how}")
    if resume_from is not None and cfg.resume == "fresh":
        raise UserFacingError(
            f"asked to resume from {resume_from} with train.resume: fresh; pass a checkpoint or start fresh, not both"
        )


def _training_classes(cfg: TrainParams, dataset: PreparedDataset) -> tuple[str, ...]:
    """The class names a conditional run trains on; () for an unconditional run."""
    if cfg.class_balanced and dataset.labels is None:
        raise UserFacingError(
            f"train.class_balanced is true, but the prepared data ({dataset.root}) has no class labels; put the images "
            "in class folders (preprocess.labels, README 'Class labels') or set train.class_balanced: false")
    if cfg.conditional is False or dataset.labels is None:
        if cfg.conditional is True:
            raise UserFacingError(
                f"train.conditional is true, but the prepared data ({dataset.root}) has no class labels; put the "
                "images in class folders or give a labels file (preprocess.labels, README 'Class labels'), or set "
                "train.conditional: auto to train unconditionally on unlabelled data")
        return ()
    return tuple(dataset.class_names)


def _with_conditional(params: Params, conditional: bool) -> Params:
    """`auto` made concrete: the run's identity and params.json record what ran."""
    return params.model_copy(update={"train": params.train.model_copy(update={"conditional": conditional})})


def training_data_key(dataset: PreparedDataset, classes: tuple[str, ...]) -> str:
    """What identifies a run's training data: the pixels, and for a conditional run the labels and class names."""
    if not classes:
        return dataset.content_hash
    named = json.dumps([dataset.content_hash, dataset.labels_hash, list(classes)])
    return hashlib.sha256(named.encode()).hexdigest()


def _real_sampler(cfg: TrainParams, dataset: PreparedDataset, seed: int) -> EpochSampler:
    if cfg.class_balanced:
        return ClassBalancedSampler(np.asarray(dataset.labels), seed)
    return EpochSampler(dataset.count, seed)


def _check_same_run(identity: RunIdentity, world: World) -> None:
    """Every rank must key the same run: otherwise each would resume and check its own checkpoints."""
    seen = all_gather_object(identity.fingerprint, world)
    if len(set(seen)) > 1:
        runs = ", ".join(f"rank {rank}: {fingerprint}" for rank, fingerprint in enumerate(seen))
        raise UserFacingError(
            f"the ranks disagree on the run ({runs}): every node must train with the same parameters "
            "(the node layout keys aside), the same prepared data and the same training code"
        )


def _training_device(name: str, world: World) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device


def _settle_speed(
    params: Params, dataset: PreparedDataset, data_key: str, device: torch.device, code: CodeDigest,
    checkpoints_root: Path,
) -> TrainSpeed:
    """Concrete precision and channels_last: explicit settings, else what this run's checkpoints
    were made with, else the speed probe (which only ever decides for a run with no checkpoint)."""
    cfg = params.train
    if cfg.precision == "auto" or cfg.channels_last == "auto":
        recorded = _speed_of_existing_run(params, data_key, code, checkpoints_root)
        if recorded is not None:
            return recorded
    return resolve_train_speed(cfg, dataset.resolution, device, params.base.seed, machine_cache_dir())


def _speed_of_existing_run(
    params: Params, dataset_sha256: str, code: CodeDigest, checkpoints_root: Path,
) -> TrainSpeed | None:
    """The settings of the newest run with checkpoints that these `auto` params would continue, if any."""
    cfg = params.train
    if cfg.resume == "fresh":
        return None
    accept_code_change = cfg.resume == "accept_code_change"
    for record in run_records(checkpoints_root):
        precision = record.compared.get("train.precision")
        if precision not in ("fp32", "bf16", "fp16") or cfg.precision not in ("auto", precision):
            continue
        channels_last = record.speed.get("channels_last", False) if cfg.channels_last == "auto" else cfg.channels_last
        speed = TrainSpeed(precision, bool(channels_last), f"as this run's checkpoints were made: {record.newest.parent}")
        identity = run_identity(_with_speed(params, speed), dataset_sha256, code)
        if record.compared == identity.compared or (accept_code_change and same_run_but_code(record.compared, identity)):
            return speed
    return None


def _with_speed(params: Params, speed: TrainSpeed) -> Params:
    return params.model_copy(update={"train": params.train.model_copy(
        update={"precision": speed.precision, "channels_last": speed.channels_last})})


def _configure_backends(cfg: TrainParams, device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32
        # Fixed shapes: let cuDNN pick the fastest kernels (bit-reproducibility is promised on CPU only).
        torch.backends.cudnn.benchmark = True


def _throughput_watch(device: torch.device, log: Logger) -> ThroughputWatch | None:
    """On a CPU: warn now if other work keeps the cores busy, and watch each tick's throughput."""
    if device.type != "cpu":
        return None
    threads = torch.get_num_threads()
    if warning := busy_machine_warning(threads, current_load()):
        log.warning(warning)
    return ThroughputWatch(threads)


def _monitor(params: Params, dataset: PreparedDataset, device: torch.device, n_classes: int) -> TickMonitor:
    n = max(params.train.grid_size**2, 2)
    reference = np.random.default_rng(params.base.seed).choice(dataset.count, size=min(n, dataset.count), replace=False)
    return TickMonitor(params.train.z_dim, params.train.grid_size, params.base.seed,
                       dataset.images[np.sort(reference)], device, n_classes)


def _my_reals(source: RealImages | RealLabels, indices: np.ndarray, step: GanStep) -> list[torch.Tensor]:
    """This process's real microbatches (images, or their labels) of one global batch of indices."""
    size = step.cfg.microbatch
    return [source.batch(indices[m * size : (m + 1) * size]) for m in step.my_microbatches()]


# ---------------------------------------------------------------------- resume


def _starting_checkpoint(
    cfg: TrainParams, identity: RunIdentity, run_dir: Path, resume_from: Path | None, world: World, log: Logger,
) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint to continue and its loaded record, or (None, None) to start from scratch."""
    if resume_from is not None:
        return Path(resume_from), load_checkpoint(Path(resume_from))  # asked for by name: unreadable is an error
    if cfg.resume == "fresh":
        if world.is_main and list_checkpoints(run_dir):
            aside = _free_name(run_dir)
            run_dir.rename(aside)
            log.info("train.resume: fresh: moved this run's earlier checkpoints to %s (kept, not deleted)", aside)
        barrier(world)
        return None, None
    if world.is_main:
        for stale in run_dir.glob(".ckpt-*.tmp"):  # a write cut short by a kill; never a valid checkpoint
            stale.unlink(missing_ok=True)
    checkpoints = list_checkpoints(run_dir)
    if checkpoints:
        return _newest_readable(checkpoints, world, log)
    earlier = _same_run_with_other_code(run_dir.parent, identity)
    if earlier is None:
        return None, None
    changed = ", ".join(changed_code_files(earlier.code_files, identity)) if earlier.code_files \
        else "unknown (that checkpoint predates per-file digests)"
    if cfg.resume == "accept_code_change":
        log.info("train.resume: accept_code_change: continuing %s, made with other training code (changed: %s)",
                 earlier.newest, changed)
        return _newest_readable(list_checkpoints(earlier.run_dir), world, log)
    log.info("train: the training code changed since this run's newest checkpoint %s (changed: %s); "
             "starting a new run (the old one is kept). To continue it instead, set train.resume: "
             "accept_code_change", earlier.newest, changed)
    return None, None


def _newest_readable(checkpoints: list[Path], world: World, log: Logger) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest checkpoint that loads; unreadable newer ones are set aside as *.corrupt (rank 0), not deleted.

    A checkpoint truncated by a full disk or a copy cut short must not block every rerun while
    valid older ones sit beside it.
    """
    for path in reversed(checkpoints):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            if not isinstance(exc, CorruptCheckpointError) and path.exists():
                raise  # readable, but another format: not ours to move
            if world.is_main:  # the other ranks skip it too (they may find it already moved)
                aside = set_aside_corrupt(path)
                log.warning("train: %s; moved it aside to %s and resuming from the checkpoint before it", exc, aside.name)
    return None, None


def _same_run_with_other_code(checkpoints_root: Path, identity: RunIdentity) -> RunRecord | None:
    """The newest run of the same params and data (precision included) made with other training code."""
    return next((record for record in run_records(checkpoints_root)
                 if same_run_but_code(record.compared, identity)), None)


def _free_name(run_dir: Path) -> Path:
    n = 1
    while (candidate := run_dir.with_name(f"{run_dir.name}.superseded-{n}")).exists():
        n += 1
    return candidate


def _restore(
    path: Path, record: dict[str, Any], identity: RunIdentity, stop_nimg: int, nets: GanNetworks,
    sampler: EpochSampler, log: Logger, accept_code_change: bool,
) -> Progress:
    changed = check_compatible(record, identity, path, accept_code_change)
    progress = Progress(**record["progress"])
    if record["compared"].get(CODE_KEY) != identity.compared[CODE_KEY]:
        progress.code_changes.append({
            "at_kimg": progress.nimg / 1000, "checkpoint": str(path), "files": changed,
            "from_code_digest": record["compared"].get(CODE_KEY), "to_code_digest": identity.compared[CODE_KEY],
        })
    if progress.nimg > stop_nimg:
        raise CheckpointError(
            f"{path}: this run is already at {progress.nimg / 1000:.3f} kimg, beyond train.kimg "
            f"({stop_nimg / 1000:.3f}); raise train.kimg to continue it, or set train.resume: fresh "
            "to train a shorter run from scratch (existing checkpoints are kept)"
        )
    nets.load_state_dict(record["networks"])
    sampler.load_state_dict(record["sampler"])
    restore_rng_state(record["rng"])
    log.info("train: resuming from %s at %.3f kimg (step %d)", path, progress.nimg / 1000, progress.step)
    return progress


def _raise_if_nonfinite(step: GanStep, run_dir: Path, images_per_step: int) -> None:
    failure = step.nonfinite.first_failure()
    if failure is None:
        return
    bad_step, what = failure
    checkpoints = list_checkpoints(run_dir)
    last_good = str(checkpoints[-1]) if checkpoints else "none yet"
    raise NonFiniteLossError(
        f"non-finite {what} at step {bad_step} (kimg {(bad_step + 1) * images_per_step / 1000:.3f}); "
        f"stopped without writing a checkpoint after it; last good checkpoint: {last_good}. "
        "Try lower train.lr_d / train.lr_g, train.precision: fp32, or smaller penalty weights "
        "(train.r1_gamma, train.r2_gamma, train.gp_weight); a rerun resumes from the last good checkpoint"
    )


def _stop_if_diverged(loss: str, losses: dict[str, float], progress: Progress, run_dir: Path) -> None:
    """Count the ticks in a row whose losses are beyond any healthy value; stop at DIVERGED_TICKS.

    Every rank sees the same (all-reduced) losses, so every rank stops together. Nothing is
    published: the stage fails and the checkpoints before the divergence are kept.
    """
    beyond = diverged_loss(losses, loss)
    progress.diverged_ticks = progress.diverged_ticks + 1 if beyond else 0
    if progress.diverged_ticks < DIVERGED_TICKS:
        return
    checkpoints = list_checkpoints(run_dir)
    raise DivergedError(
        f"training diverged at kimg {progress.nimg / 1000:.3f}: {beyond} for {progress.diverged_ticks} ticks in a "
        f"row (loss_d {losses['loss_d']:.3g}, loss_g {losses['loss_g']:.3g}); stopped, nothing published. "
        f"Lower train.lr_g / train.lr_d (or raise the penalties); the checkpoints before it are kept "
        f"({checkpoints[-1] if checkpoints else 'none yet'}), and a change of params starts a new run"
    )


# ---------------------------------------------------------------------- ticks


def _upkeep(
    params: Params,
    identity: RunIdentity,
    run_dir: Path,
    nets: GanNetworks,
    sampler: EpochSampler,
    progress: Progress,
    monitor: TickMonitor,
    losses: dict[str, float],
    img_per_s: float,
    stop_nimg: int,
    speed: TrainSpeed,
    classes: tuple[str, ...],
) -> TickReport:
    """Grid, stats and checkpoint for the tick just reached (rank 0)."""
    kimg = progress.nimg / 1000
    latents = recalibration_latents(params.train.z_dim, params.base.seed)
    recalibrate_batchnorm_(nets.G_ema, latents, params.train.microbatch)  # G's statistics are not G_ema's
    png, diversity, ratio = monitor.look(nets.G_ema)
    grid_path = atomic_write_bytes(run_dir / SAMPLES_DIR / f"grid-{kimg:08.3f}.png", png)
    eta_s = (stop_nimg - progress.nimg) / max(img_per_s, 1e-9)
    progress.history.append({
        "tick": len(progress.history) + 1, "kimg": kimg, "step": progress.step, "total_kimg": stop_nimg / 1000,
        **losses, "img_per_s": img_per_s, "eta_s": eta_s, "diversity": diversity, "diversity_ratio": ratio,
        "grid": f"{SAMPLES_DIR}/{grid_path.name}", "time": time.time(), "speed": speed.as_record(),
        "code_digest": identity.compared[CODE_KEY],
    })
    atomic_write_text(run_dir / STATS_FILE, _jsonl(progress.history))
    save_checkpoint(run_dir, {
        "nimg": progress.nimg,
        "progress": asdict(progress),
        "networks": nets.state_dict(),
        "sampler": sampler.state_dict(),
        "rng": capture_rng_state(),
        "compared": identity.compared,
        "code_files": identity.code_files,
        "fingerprint": identity.fingerprint,
        "speed": _speed_choice(speed),
    }, keep_last=params.train.keep_last)
    if not (run_dir / RUN_RECORD_FILE).is_file():
        write_run_record(run_dir, identity, _speed_choice(speed))
    return TickReport(
        tick=len(progress.history), kimg=kimg, total_kimg=stop_nimg / 1000, img_per_s=img_per_s, eta_s=eta_s,
        losses=losses, diversity=diversity, diversity_ratio=ratio, grid_path=grid_path, generator=nets.G_ema,
        run_dir=run_dir, classes=classes,
    )


def _speed_choice(speed: TrainSpeed) -> dict[str, Any]:
    """What a checkpoint keeps of the speed settings: the choice, not the timings behind it."""
    return {"precision": speed.precision, "channels_last": speed.channels_last}


def _progress_line(report: TickReport) -> str:
    digits = 1 if report.total_kimg >= 10 else 3
    return (
        f"kimg {report.kimg:.{digits}f}/{report.total_kimg:.{digits}f}  {report.img_per_s:.0f} img/s"
        f"  ETA {_duration(report.eta_s)}"
        f"  loss_d={report.losses['loss_d']:.3f} loss_g={report.losses['loss_g']:.3f}"
        f"  diversity={report.diversity_ratio:.2f}"
    )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


# ---------------------------------------------------------------------- outputs


def _publish(
    params: Params, identity: RunIdentity, dataset: PreparedDataset, classes: tuple[str, ...], nets: GanNetworks,
    progress: Progress, speed: TrainSpeed, run_dir: Path, out_dir: Path,
) -> None:
    """Swap the finished run's outputs into `out_dir` in one step (ganlib.io.atomic.staged_directory)."""
    info = GeneratorInfo(
        arch=params.train.arch, z_dim=params.train.z_dim, resolution=dataset.resolution,
        kimg=progress.nimg / 1000, data_md5=dataset.data_md5, dataset_sha256=dataset.content_hash,
        params_fingerprint=identity.fingerprint, classes=classes,
    )
    with staged_directory(out_dir) as stage:
        save_generator(stage / GENERATOR_FILE, nets.G_ema, info,
                       generator_kwargs(params.train, dataset.resolution, len(classes)))
        (stage / STATS_FILE).write_text(_jsonl(progress.history))
        (stage / SAMPLES_DIR).mkdir()
        for record in progress.history:
            source = run_dir / record["grid"]
            if source.is_file():
                shutil.copy2(source, stage / record["grid"])
        if progress.history:
            shutil.copy2(run_dir / progress.history[-1]["grid"], stage / SAMPLES_DIR / "final.png")
        for extra in sorted(run_dir.glob("*.csv")):  # curves that tick hooks wrote (e.g. FID during training)
            shutil.copy2(extra, stage / extra.name)
        # params.json is a tracked output: dvc.lock changes with the precision that ran and the code it ran.
        write_resolved_params(params, stage, STAGE_PARAMS["train"], run={
            "fingerprint": identity.fingerprint, "code_digest": identity.compared[CODE_KEY],
            "code_changes": progress.code_changes, "speed": _speed_choice(speed),
        })


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)

