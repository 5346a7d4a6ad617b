"""Typed parameters: params.yaml -> validated, immutable pydantic models.

Every stage receives the whole `Params` object explicitly; nothing reads
params.yaml behind the caller's back. Unknown keys, wrong types and
out-of-range values are errors that name the file and the key, and
`--set section.key=value` overrides go through exactly the same checks.

Types are strict, so that a value which cannot work is refused when the
params load, before any compute: an int field refuses "3" and 3.5, a float
field refuses "1e-3" (text) and true, and every float must be finite (.inf
and .nan are refused). An int is accepted where a float is expected,
since YAML writes a whole number as an int (`kimg: 48`); it becomes 48.0.
YAML is read with YAML 1.2's floats, so `lr_g: 1e-3` is a number (PyYAML's
YAML 1.1 makes it the text "1e-3"; DVC's reader, ruamel, already reads it
as a number); quoted, "1e-3" stays text and is refused.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ganlib.errors import UserFacingError
from ganlib.io.atomic import atomic_write_text

DEFAULT_PARAMS_FILE = "params.yaml"
# The named override sets live beside the params file, not in it: DVC shows every key of
# params.yaml as a param of every run (`dvc exp show` grew a column per preset key).
PRESETS_FILE_NAME = "presets.yaml"


class _ParamsYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus YAML 1.2 floats without a dot: `1e-3` is 0.001, not the text "1e-3"."""


# YAML 1.1 (PyYAML) needs a dot in an exponent float (1.0e-3); YAML 1.2, which DVC's reader
# follows, does not. Reading `1e-3` as the number its writer meant keeps strict float fields usable.
_ParamsYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"),
)


class ParamsError(UserFacingError, ValueError):
    """params.yaml (or an override) is invalid; the message says where and why."""


class Section(BaseModel):
    # Frozen so that a stage cannot quietly mutate what the next stage sees;
    # extra="forbid" so that a typo is an error, not a silently ignored knob;
    # strict so that "3" is not an int nor "1e-3" a float (see the module docstring);
    # finite floats only, since .inf or .nan kimg (or lr) fail hours later, not here.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _list_as_tuple(value: Any) -> Any:
    """A YAML list for a fixed-length tuple field (strict mode takes only tuples); its items stay strict."""
    return tuple(value) if isinstance(value, list) else value


# The resolutions each `train.arch` builds: ganlib/models/registry.py builds its
# architectures from this table, and the schema refuses a preprocess.resolution
# that the chosen architecture cannot train on, before preprocessing runs. Here,
# not in the registry, so that loading params never imports torch.
ARCHITECTURE_RESOLUTIONS: dict[str, tuple[int, ...]] = {
    "dcgan": (32, 64, 128, 256),
    "resnet": (32, 64, 128, 256),
    "r3gan": (32, 64, 128, 256),
}


# --------------------------------------------------------------------------- base


class Paths(Section):
    raw: str
    prepared: str
    train: str
    live: str                                 # train -> the dvclive log: curves and sample grids per tick
    checkpoints: str
    evaluate: str
    fid_cache: str
    weights: str
    publish_record: str
    model: str                                # publish -> the model package (weights, ONNX, card)
    history: str
    reports: str


class BaseParams(Section):
    seed: int = Field(ge=0)
    device: Literal["auto", "cpu", "cuda", "mps"]
    paths: Paths


# --------------------------------------------------------------------------- data


class DataParams(Section):
    """The embedded default dataset (procedural natural scenes)."""

    n_images: int = Field(ge=1, le=1_000_000)
    size: int = Field(ge=16, le=1024)
    seed: int = Field(ge=0)


# --------------------------------------------------------------------------- preprocess


# The largest preprocess.near_duplicate_distance: above it the pigeonhole search of
# ganlib/data/near_duplicates.py (whose docstring has the numbers) is no longer fast.
NEAR_DUPLICATE_MAX_DISTANCE = 7


class PreprocessParams(Section):
    resolution: int = Field(ge=8, le=1024)
    min_side: int = Field(ge=1)
    max_aspect_ratio: float = Field(ge=1.0)
    max_pixels: int = Field(ge=1)
    background: tuple[int, int, int]
    dedupe: bool
    # Perceptual near-duplicates (re-encodes, resizes: ganlib/data/near_duplicates.py): listed in
    # qa_report.json (report) or also left out of the prepared data (drop); within this many of 64 bits.
    near_duplicates: Literal["report", "drop"]
    near_duplicate_distance: int = Field(ge=0)  # at most NEAR_DUPLICATE_MAX_DISTANCE (_searchable_distance)
    workers: int = Field(ge=0, le=256)
    # Where each image's class comes from (ganlib/data/labels.py): class folders, labels.csv /
    # dataset.json at the raw folder's top, none, or auto (a labels file, else class folders, else none).
    labels: Literal["auto", "folders", "file", "none"]

    _background_as_tuple = field_validator("background", mode="before")(_list_as_tuple)

    @field_validator("background")
    @classmethod
    def _rgb_range(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if not all(0 <= c <= 255 for c in value):
            raise ValueError("each channel must be in 0..255")
        return value

    @field_validator("near_duplicate_distance")
    @classmethod
    def _searchable_distance(cls, value: int) -> int:
        if value > NEAR_DUPLICATE_MAX_DISTANCE:
            raise ValueError(
                f"at most {NEAR_DUPLICATE_MAX_DISTANCE} bits of 64: the near-duplicate search splits the hash "
                f"into distance+1 bands, and above {NEAR_DUPLICATE_MAX_DISTANCE} they are too narrow to skip most pairs "
                "(at 15 it compares every pair); distinct photos already differ by about 10"
            )
        return value


# --------------------------------------------------------------------------- train


class TrainParams(Section):
    """The training stage (ganlib/training/loop.py). Comments give units and the why."""

    arch: Literal["dcgan", "resnet", "r3gan"] # ARCHITECTURE_RESOLUTIONS lists the resolutions of each
    # Class-conditional G and D (ganlib/models/conditioning.py). auto: on when the prepared data has labels;
    # true refuses data without labels. The class list is part of the run's identity.
    conditional: bool | Literal["auto"]
    class_balanced: bool                      # draw real batches with every class equally often (else as the data has them)
    z_dim: int = Field(ge=1, le=4096)
    g_width: int = Field(ge=4, le=2048)       # base channels: G's last hidden layer (DCGAN-64: ngf)
    d_width: int = Field(ge=4, le=2048)       # base channels: D's first layer (DCGAN-64: ndf)
    loss: Literal["bce", "hinge", "lsgan", "wgan-gp", "rpgan"]  # rpgan: relativistic pairing (R3GAN)
    gp_weight: float = Field(ge=0)            # WGAN-GP gradient penalty weight (loss: wgan-gp only)
    r1_gamma: float = Field(ge=0)             # lazy R1 penalty weight; 0 disables
    r2_gamma: float = Field(ge=0)             # R2 (R1 on generated images) weight; 0 disables
    r1_interval: int = Field(ge=1)            # R1 and R2 every N discriminator steps (scaled by N)
    diffaugment: list[Literal["color", "translation", "cutout"]]
    augment_p: float = Field(ge=0, le=1)      # chance that each D input is augmented (1: all, DiffAugment's way)
    batch_size: int = Field(ge=1)             # global batch per optimiser step, all processes of all nodes
    microbatch: int = Field(ge=1)             # images per forward pass per process (BatchNorm sees this many)
    lr_g: float = Field(gt=0)
    lr_d: float = Field(gt=0)
    betas: tuple[float, float]
    d_steps: int = Field(ge=1)                # discriminator steps per generator step
    kimg: float = Field(gt=0)                 # training length in thousands of real images shown
    tick_kimg: float = Field(gt=0)            # upkeep (log, stats, grid, snapshot) every N kimg
    keep_last: int = Field(ge=1)              # checkpoints kept
    ema_halflife_kimg: float = Field(ge=0)    # 0: G_ema is G
    ema_rampup: float = Field(ge=0)           # half-life at most rampup * kimg so far (early samples); 0: off
    # cosine: lr, Adam beta2, R1/R2 gamma and EMA half-life go from their values above to the
    # end values below along half a cosine of the run (ganlib/training/schedule.py); constant: they stay.
    schedule: Literal["constant", "cosine"]
    # cosine only: the schedule's own length; after it the end values hold (R3GAN's way). null: kimg.
    # Set it to be able to raise kimg later and continue the run (the schedule, not the length, is the run).
    schedule_kimg: float | None = Field(gt=0)
    lr_end_fraction: float = Field(gt=0)      # final lr_g and lr_d, as a fraction of them
    beta2_end: float | None = Field(ge=0, lt=1)  # final Adam beta2; null: betas[1]
    gamma_end_fraction: float = Field(ge=0)   # final r1_gamma and r2_gamma, as a fraction of them
    ema_halflife_end_kimg: float | None = Field(ge=0)  # final EMA half-life; null: ema_halflife_kimg
    augment_p_end: float | None = Field(ge=0, le=1)  # final augment_p; null: augment_p
    # auto: measured on this machine (ganlib/training/speed.py); else the autocast dtype
    # (fp16 adds a gradient scaler). The resolved precision is part of the run's identity.
    precision: Literal["auto", "fp32", "bf16", "fp16"]
    channels_last: bool | Literal["auto"]     # auto: measured with the precision
    compile: bool                             # torch.compile G and D (CUDA; slow to start)
    tf32: bool                                # TF32 matmul/conv on CUDA
    data_on_device: bool                      # keep the uint8 dataset in GPU memory (CUDA)
    check_finite_every: int = Field(ge=1)     # steps between host checks of the non-finite flag
    nproc: int = Field(ge=1)                  # data-parallel processes per node (torchrun); 1 = in-process
    # Several machines (ganlib/training/distributed.py): each runs nproc processes, nnodes * nproc in all.
    nnodes: int = Field(ge=1)
    rdzv_endpoint: str | None                 # host:port of torchrun's rendezvous; null: one machine (--standalone)
    rdzv_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # the run's rendezvous id, the same on every node
    node_rank: int | None = Field(ge=0)       # null: the rendezvous numbers the nodes; else this node's (static)
    grid_size: int = Field(ge=1, le=32)       # sample grid is grid_size x grid_size
    # auto: continue a matching checkpoint | fresh: ignore them | accept_code_change: as auto, and when
    # the weight-shaping code changed, continue the newest checkpoint of the same params and data anyway
    resume: Literal["auto", "fresh", "accept_code_change"]

    @property
    def schedule_length_kimg(self) -> float:
        """How many kimg the cosine schedule runs over (schedule_kimg, else the whole run)."""
        return self.schedule_kimg if self.schedule_kimg is not None else self.kimg

    _betas_as_tuple = field_validator("betas", mode="before")(_list_as_tuple)

    @field_validator("betas")
    @classmethod
    def _betas_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in value):
            raise ValueError("Adam betas must be in [0, 1)")
        return value

    @field_validator("rdzv_id", mode="before")
    @classmethod
    def _job_id_as_text(cls, value: Any) -> Any:
        # Schedulers' job ids are numbers ($SLURM_JOB_ID), which --set reads as YAML integers.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("rdzv_endpoint")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, _, port = value.rpartition(":")
        if not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                "expected host:port of the rendezvous, reachable from every node (e.g. node001:29500, "
                "10.0.0.5:29500), or null for one machine"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "TrainParams":
        per_step = self.nnodes * self.nproc * self.microbatch
        if self.batch_size % per_step:
            factors = "nproc * microbatch" if self.nnodes == 1 else "nnodes * nproc * microbatch"
            values = f"{self.nproc} * {self.microbatch}" if self.nnodes == 1 else (
                f"{self.nnodes} * {self.nproc} * {self.microbatch}")
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of {factors} ({values} = {per_step})")
        if self.nnodes > 1 and self.rdzv_endpoint is None:
            raise ValueError(
                f"train.nnodes: {self.nnodes} needs train.rdzv_endpoint: the host:port where the nodes meet "
                "(torchrun's c10d rendezvous), reachable from every node, e.g. the first node's address:29500"
            )
        if self.node_rank is not None and self.rdzv_endpoint is None:
            raise ValueError(
                f"train.node_rank: {self.node_rank} needs train.rdzv_endpoint (node 0 hosts the rendezvous "
                "there); or set train.node_rank: null"
            )
        if self.node_rank is not None and self.node_rank >= self.nnodes:
            raise ValueError(
                f"train.node_rank: {self.node_rank} must be below train.nnodes ({self.nnodes}): nodes are "
                "numbered 0 .. nnodes-1; or set train.node_rank: null to let the rendezvous number them"
            )
        if self.schedule == "constant":
            # End values that would be silently ignored are an error, like an unknown key.
            moved = [key for key, value, still in (
                ("lr_end_fraction", self.lr_end_fraction, 1.0), ("beta2_end", self.beta2_end, None),
                ("gamma_end_fraction", self.gamma_end_fraction, 1.0),
                ("ema_halflife_end_kimg", self.ema_halflife_end_kimg, None),
                ("augment_p_end", self.augment_p_end, None), ("schedule_kimg", self.schedule_kimg, None),
            ) if value != still]
            if moved:
                raise ValueError(
                    f"train.schedule: constant ignores {', '.join('train.' + k for k in moved)}: set "
                    "train.schedule: cosine, or reset them (lr_end_fraction and gamma_end_fraction: 1.0, "
                    "beta2_end, ema_halflife_end_kimg, augment_p_end and schedule_kimg: null)"
                )
        if not self.diffaugment and (self.augment_p != 1.0 or self.augment_p_end is not None):
            raise ValueError(
                "train.augment_p / augment_p_end set, but train.diffaugment is empty, so nothing would be "
                "augmented: name the augmentations, e.g. train.diffaugment: [color, translation], or reset "
                "train.augment_p: 1.0 and augment_p_end: null"
            )
        if self.diffaugment and self.augment_p == 0 and not self.augment_p_end:
            raise ValueError(
                f"train.diffaugment: {list(self.diffaugment)} is never applied with train.augment_p: 0: raise "
                "augment_p (1 augments every image), set a cosine schedule to augment_p_end, or set train.diffaugment: []"
            )
        if self.loss == "wgan-gp" and self.arch == "dcgan":
            raise ValueError(
                "train.loss: wgan-gp needs a discriminator without BatchNorm (the per-sample gradient "
                "penalty is ill-defined on a batch-normalised batch): set train.arch: resnet, or another loss"
            )
        if self.loss == "rpgan" and self.arch == "dcgan":
            raise ValueError(
                "train.loss: rpgan needs a discriminator without BatchNorm (it compares each fake with its "
                "paired real, and BatchNorm mixes the samples of a batch): set train.arch: r3gan or resnet, "
                "or another loss"
            )
        for key, gamma, name in (("r1_gamma", self.r1_gamma, "R1"), ("r2_gamma", self.r2_gamma, "R2")):
            if gamma > 0 and self.arch == "dcgan":
                raise ValueError(
                    f"train.{key}: {gamma:g} ({name}) needs a discriminator without BatchNorm (the "
                    "per-sample gradient penalty is ill-defined on a batch-normalised batch): set "
                    f"train.arch: resnet or r3gan, or train.{key}: 0"
                )
        # The penalties backpropagate through a gradient of D (double backward),
        # which torch.compile's AOTAutograd does not support.
        if self.compile and (self.r1_gamma > 0 or self.r2_gamma > 0 or self.loss == "wgan-gp"):
            if self.r1_gamma > 0:
                penalty = f"train.r1_gamma: {self.r1_gamma:g} (R1)"
            elif self.r2_gamma > 0:
                penalty = f"train.r2_gamma: {self.r2_gamma:g} (R2)"
            else:
                penalty = "train.loss: wgan-gp"
            raise ValueError(
                f"train.compile: true cannot be combined with {penalty}: its penalty needs a double "
                "backward through D, which a compiled module does not support; set train.compile: false"
            )
        return self


# --------------------------------------------------------------------------- evaluate


class DuringTrainingEvalParams(Section):
    """A cheaper FID/KID measured while training runs, written as a curve."""

    every_kimg: float = Field(ge=0)           # 0 = off; otherwise at the first tick past each multiple
    n_samples: int = Field(ge=2)              # fewer than evaluate.n_samples: it runs inside training


class EvaluateParams(Section):
    # fid-inception-v3-tf2015: the standard FID Inception (weights from `make weights`);
    # inception-v3-compat: torch-fidelity's own (needs inception_weights);
    # tiny-random-conv: a small fixed random network for tests and smoke runs only
    # (its numbers are not comparable with published FIDs).
    extractor: Literal["fid-inception-v3-tf2015", "inception-v3-compat", "tiny-random-conv"]
    device: Literal["auto", "cpu", "cuda"]
    n_samples: int = Field(ge=2)              # generated images per evaluation
    n_reference: int = Field(ge=0)            # real images for the reference statistics; 0 = all
    batch_size: int = Field(ge=1)
    seed: int = Field(ge=0)                   # latents, KID subsets, reference subset: same seed, same numbers
    # prdc: precision, recall, density, coverage (ganlib/metrics/prdc.py); memorisation: nearest-training-image
    # check (ganlib/metrics/memorisation.py); fd_dinov2: Fréchet distance on DINOv2 ViT-B/14 features
    metrics: list[Literal["fid", "kid", "is", "prdc", "memorisation", "fd_dinov2"]]
    kid_subsets: int = Field(ge=1)
    kid_subset_size: int = Field(ge=2)        # reduced (and recorded) when fewer samples exist
    isc_splits: int = Field(ge=1)
    prdc_k: int = Field(ge=1)                 # k of the k-NN balls of precision/recall/density/coverage
    memorisation_quantile: float = Field(gt=0.0, lt=1.0)  # q: the memorisation check's threshold and baseline
    truncation: list[float] = Field(min_length=1)         # psi values of the truncation table; 1.0 always included
    inception_weights: str | None             # torch-fidelity inception-v3-compat .pth for IS; None = look in torch hub cache
    # The FID Inception's speed settings on a CPU (ganlib/metrics/speed.py): auto measures them.
    precision: Literal["auto", "fp32", "bf16"]
    channels_last: bool | Literal["auto"]
    during_training: DuringTrainingEvalParams
    # FID's uncertainty (ganlib/metrics/scores.py), only when fid is in metrics: resamples of the
    # generated features for a 95% sampling-noise band (0 = off), and FID-infinity (Chong & Forsyth 2020).
    fid_bootstrap: int = Field(ge=0)
    fid_infinity: bool
    # A class-conditional generator's FID/KID per class (ganlib/metrics/per_class.py): null = the evaluation's own
    # samples and reference images of each class (no extra extractor pass); N = N fresh samples generated as each
    # class against all its real images (0 = no per-class scores); a class with fewer real images than
    # per_class_min_images gets its reason instead of a number.
    per_class_samples: int | None = Field(ge=0)
    per_class_min_images: int = Field(ge=2)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        # Named for what replaced them, rather than a bare "unknown key", in a params.yaml from before prdc.
        if isinstance(data, dict) and "prc_neighborhood" in data:
            raise ValueError("prc_neighborhood is now prdc_k (the k of precision/recall/density/coverage; 5 as in "
                             "Naeem et al. 2020): rename the key")
        if isinstance(data, dict) and isinstance(data.get("metrics"), list) and "prc" in data["metrics"]:
            raise ValueError("metrics: prc is now prdc (precision, recall, density and coverage): rename it")
        return data

    @field_validator("truncation")
    @classmethod
    def _psi_in_range(cls, values: list[float]) -> list[float]:
        # Checked here as in ganlib.models.truncation.check_truncation, which config (the bottom layer) cannot import.
        bad = [psi for psi in values if not 0.0 < psi <= 1.0]
        if bad:
            raise ValueError(f"psi {bad} outside (0, 1]: 1.0 is no truncation, smaller values trade diversity for "
                             "fidelity (e.g. [1.0, 0.8, 0.6])")
        return values

    @field_validator("fid_bootstrap")
    @classmethod
    def _enough_resamples(cls, value: int) -> int:
        # With fewer, the 2.5% and 97.5% percentiles are little more than the two most extreme resamples.
        if 0 < value < MIN_FID_BOOTSTRAP:
            raise ValueError(f"0 (off) or at least {MIN_FID_BOOTSTRAP} resamples for a 95% sampling-noise band, got {value}")
        return value

    @field_validator("per_class_samples")
    @classmethod
    def _enough_class_samples(cls, value: int | None) -> int | None:
        # One sample has no covariance: FID needs two at least.
        if value == 1:
            raise ValueError("0 (no per-class scores) or at least 2 samples per class, got 1")
        return value


MIN_FID_BOOTSTRAP = 20


# --------------------------------------------------------------------------- publish


class PublishParams(Section):
    # A local directory (relative to the repository root, or absolute) or any
    # fsspec URL: s3://bucket/prefix, gs://..., file:///abs/path, memory://name.
    target: str = Field(min_length=1)
    # always: publish every run | better_fid: only when FID beats the published gallery's
    gate: Literal["always", "better_fid"]
    seed: int = Field(ge=0)                   # latents of the grid, samples and interpolation
    grid_size: int = Field(ge=1, le=32)       # grid is grid_size x grid_size
    n_samples: int = Field(ge=1, le=10_000)   # individual sample files
    interpolation_rows: int = Field(ge=1, le=32)
    interpolation_steps: int = Field(ge=2, le=64)
    image_format: Literal["png", "webp"]      # both lossless
    display_scale: int = Field(ge=1, le=16)   # on-page upscale (nearest neighbour, via CSS)
    keep_releases: int = Field(ge=1, le=1000) # releases kept in the target, the published one included
    batch_size: int = Field(ge=1)             # generator batch (CPU, fp32)
    data_licence: str = Field(min_length=1)   # the training data's licence, as the model card states it
    # The latent walk video on the page (ganlib/generation/walk.py): keyframes are the latents of seeds
    # seed .. seed + walk_keyframes - 1; 0 keyframes = no walk.
    walk_keyframes: int = Field(ge=0, le=64)
    walk_frames_per_keyframe: int = Field(ge=1, le=240)
    walk_fps: int = Field(ge=1, le=60)
    nearest_pairs: int = Field(ge=0, le=64)   # closest sample/training pairs shown per space (memorisation.json)

    @field_validator("walk_keyframes")
    @classmethod
    def _walk_loops(cls, value: int) -> int:
        if value == 1:
            raise ValueError("a walk needs at least 2 keyframes to travel between; 0 turns it off")
        return value


# --------------------------------------------------------------------------- retrain


class RetrainParams(Section):
    """Scheduled retraining (flows/retrain.py): when and how a new dataset version is trained."""

    cron: str                                 # five-field cron expression, e.g. "0 3 * * *"
    timezone: str                             # IANA zone the cron is read in, e.g. UTC, Europe/Berlin
    deployment_name: str = Field(min_length=1)
    experiment_prefix: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")  # DVC experiment names: <prefix>-<md5>-<time>
    commit: bool                              # also git-commit each successful retrain's results

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("expected five fields: minute hour day-of-month month day-of-week")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone (use an IANA name such as UTC or Europe/Berlin)") from None
        return value


# --------------------------------------------------------------------------- compare


class CompareParams(Section):
    """One table of metrics across dataset versions (ganlib/versions/compare.py)."""

    drift: bool                               # real-vs-real FID/KID between consecutive versions (reads their prepared data)
    include_history: bool                     # also list the retrain history rows (base.paths.history)
    plot_metrics: list[
        Literal["fid", "kid_mean", "is_mean", "precision", "recall", "density", "coverage", "memorisation",
                "drift_fid_from_previous", "drift_kid_from_previous"]
    ] = Field(min_length=1)                   # one panel each in compare.png


# --------------------------------------------------------------------------- root


class Params(Section):
    base: BaseParams
    data: DataParams
    preprocess: PreprocessParams
    train: TrainParams
    evaluate: EvaluateParams
    publish: PublishParams
    retrain: RetrainParams
    compare: CompareParams
    # Named override sets, `section.key: value` each (`--preset NAME`), from presets.yaml beside the
    # params file (load_params), never from params.yaml itself (validate_params refuses the key).
    # Excluded from dumps: a preset is a recipe, not a setting a run used.
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict, exclude=True)
    _presets_file: Path | None = PrivateAttr(default=None)  # where `presets` came from, for error messages

    @model_validator(mode="after")
    def _resolution_the_architecture_builds(self) -> "Params":
        # Across sections: preprocessing to a size training then refuses wastes the whole preprocess run.
        supported = ARCHITECTURE_RESOLUTIONS[self.train.arch]
        if self.preprocess.resolution not in supported:
            raise ValueError(
                f"preprocess.resolution: {self.preprocess.resolution} is not a resolution train.arch: "
                f"{self.train.arch} builds; set it to one of {', '.join(map(str, supported))}"
            )
        return self

    def section_dict(self, *names: str) -> dict[str, Any]:
        """The named sections as plain JSON-able data (for hashing and records)."""
        dumped = self.model_dump(mode="json")
        return {name: dumped[name] for name in names}


# The parameters each DVC stage reads, as dotted keys (a section name stands for all of it).
# dvc.yaml lists exactly these under the stage's `params` (tests/test_stage_deps.py checks
# that), and the stage's params.json records exactly these: an edit to any other key (the
# device for preprocessing, where reports go for training) neither re-runs the stage nor
# changes its outputs. Only the `base` keys a stage uses are listed, never all of `base`.
STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "preprocess": (
        "base.paths.raw", "base.paths.prepared",
        # every preprocess key but `workers`, which cannot change the result
        "preprocess.resolution", "preprocess.min_side", "preprocess.max_aspect_ratio",
        "preprocess.max_pixels", "preprocess.background", "preprocess.dedupe",
        "preprocess.near_duplicates", "preprocess.near_duplicate_distance", "preprocess.labels",
    ),
    "train": (
        # base.device: the same run on another device is not bit-identical
        "base.seed", "base.device",
        "base.paths.prepared", "base.paths.train", "base.paths.live", "base.paths.checkpoints",
        "base.paths.weights", "base.paths.fid_cache",  # the optional FID curve
        "train",
        # what shapes the optional FID curve written during training (its rows carry a key of them)
        "evaluate.during_training", "evaluate.extractor", "evaluate.seed", "evaluate.n_reference",
        "evaluate.kid_subsets", "evaluate.kid_subset_size", "evaluate.batch_size", "evaluate.precision",
        "evaluate.channels_last", "evaluate.inception_weights",
    ),
    "evaluate": (
        # no base.seed or base.device: evaluation has its own (evaluate.seed, evaluate.device)
        "base.paths.prepared", "base.paths.train", "base.paths.evaluate", "base.paths.weights",
        "base.paths.fid_cache",
        "evaluate",
    ),
    "publish": (
        "base.paths.prepared", "base.paths.train", "base.paths.evaluate", "base.paths.weights",
        "base.paths.fid_cache", "base.paths.publish_record", "base.paths.model",
        "publish",
        "train",
        "evaluate",  # shown on the gallery page; the better_fid gate re-scores with it
    ),
}


def params_fingerprint(params: Params, *sections: str, exclude: Sequence[str] = ()) -> str:
    """A short, stable hash of the given sections, for tracing results to params.

    `exclude` holds dotted keys ("train.kimg") that do not change what a stage
    computes, so that e.g. extending training does not look like a new run.
    """
    data = params.section_dict(*sections)
    for dotted in exclude:
        _drop_dotted(data, dotted)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_params(path: str | Path = DEFAULT_PARAMS_FILE, overrides: Sequence[str] = ()) -> Params:
    """Read, override and validate params.yaml, with the presets beside it. Raises ParamsError naming the problem."""
    path = Path(path)
    raw = _read_yaml_mapping(path)
    presets_path = presets_file(path)
    presets = read_presets(presets_path)
    # The presets must apply to the file as written (not to this run's --set, which may
    # legitimately conflict with a preset nobody picked): checked before the overrides.
    params = validate_params(raw, source=str(path))
    _check_presets(presets, raw, presets_path, str(path))
    if overrides:
        params = validate_params(apply_overrides(raw, overrides), source=f"{path} (with --set {' '.join(overrides)})")
    return _with_presets(params, presets, presets_path)


def presets_file(params_path: str | Path) -> Path:
    """The presets of a params file: presets.yaml in the same folder (each project, each --params, its own)."""
    return Path(params_path).parent / PRESETS_FILE_NAME


def read_presets(path: Path) -> dict[str, dict[str, Any]]:
    """presets.yaml as {name: {section.key: value}}; no file means no presets (it is asked for by name only)."""
    if not path.exists():
        return {}
    data = _read_yaml(path, "presets file")
    if data is None:  # empty, or comments only
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of preset names to `section.key: value` overrides, "
                          f"got {type(data).__name__}")
    for name, values in data.items():
        if not isinstance(name, str):
            raise ParamsError(f"{path}: preset name {name!r} is not text; quote it")
        if not isinstance(values, dict) or not all(isinstance(key, str) for key in values):
            raise ParamsError(f"{path}: preset {name!r}: expected a mapping of `section.key: value` overrides "
                              f"(e.g. `train.kimg: 16`), got {values!r}")
    return data


def validate_params(raw: dict[str, Any], source: str) -> Params:
    if "presets" in raw:
        # An older params.yaml: say where the section goes rather than "unknown key".
        raise ParamsError(f"{source}: `presets` is not a params.yaml section any more; move its entries "
                          f"(without the `presets:` line) to {PRESETS_FILE_NAME} in the same folder")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_format_validation_error(exc, source)) from None


def _with_presets(params: Params, presets: dict[str, dict[str, Any]], source: Path) -> Params:
    with_presets = params.model_copy(update={"presets": presets})
    with_presets._presets_file = source
    return with_presets


def _check_presets(presets: Mapping[str, Mapping[str, Any]], raw: dict[str, Any], presets_path: Path,
                   params_source: str) -> None:
    """A preset that does not apply cleanly is an error when the params load, not when someone first picks it."""
    for name, values in presets.items():
        # The values as they are: `scenegan preset` output parsing back to them is tests/test_presets.py's job.
        with_preset = copy.deepcopy(raw)
        for dotted, value in values.items():
            _set_dotted(with_preset, dotted, value, f"{presets_path}: preset {name!r}")
        validate_params(with_preset, f"{presets_path}: preset {name!r} applied to {params_source}")


def preset_overrides(params: Params, name: str) -> list[str]:
    """The preset `name` as `section.key=value` overrides, values in YAML flow style (as --set takes them)."""
    if name not in params.presets:
        where = params._presets_file or PRESETS_FILE_NAME
        if params._presets_file is not None and not params._presets_file.exists():
            raise ParamsError(f"--preset {name!r}: no presets file {where} (presets live in {PRESETS_FILE_NAME} "
                              "beside the params file); create it, or run without --preset")
        known = ", ".join(sorted(params.presets)) or "none are defined"
        raise ParamsError(f"--preset {name!r}: no such preset in {where}; known: {known}")
    return [override_expression(key, value) for key, value in params.presets[name].items()]


def override_expression(dotted: str, value: Any) -> str:
    """`section.key=value`, the value in YAML flow style: --set and `dvc exp run -S` both read it back as `value`."""
    return f"{dotted}={_flow_yaml(value)}"


def _flow_yaml(value: Any) -> str:
    """YAML without spaces for a value (r3gan, 0.5, [color,translation]): one shell word."""
    if isinstance(value, list):
        return "[" + ",".join(_flow_yaml(item) for item in value) + "]"
    return yaml.safe_dump(value, default_flow_style=True, width=2**16).removesuffix("...\n").strip()


def apply_overrides(raw: dict[str, Any], expressions: Sequence[str], origin: str = "--set") -> dict[str, Any]:
    """Return a copy of `raw` with every `section.key=value` applied in order (one copy, however many).

    Values are parsed as YAML; `origin` names where the expressions came from in errors (--set, a preset).
    """
    updated = copy.deepcopy(raw)
    for expression in expressions:
        _set_override(updated, expression, origin)
    return updated


def _set_override(raw: dict[str, Any], expression: str, origin: str) -> None:
    """Apply `section.key=value` to `raw` in place."""
    if "=" not in expression:
        raise ParamsError(f"{origin} {expression!r}: expected section.key=value, e.g. train.kimg=20")
    dotted, _, text = expression.partition("=")
    try:
        value = _parse_yaml(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{origin} {expression!r}: value is not valid YAML: {exc}") from None
    _set_dotted(raw, dotted.strip(), value, f"{origin} {expression!r}")


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any, what: str) -> None:
    """raw[section][key] = value for an existing `section.key`; `what` starts each error message."""
    keys = dotted.split(".")
    if len(keys) < 2 or not all(keys):
        raise ParamsError(f"{what}: expected section.key=value, e.g. train.kimg=20")
    node = raw
    for depth, key in enumerate(keys[:-1]):
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            where = ".".join(keys[: depth + 1])
            raise ParamsError(f"{what}: unknown section {where!r}; known: {_known(node)}")
        node = child
    if keys[-1] not in node:
        where = ".".join(keys[:-1])
        raise ParamsError(f"{what}: unknown key {dotted!r}; keys in {where!r} are: {_known(node)}")
    node[keys[-1]] = value


def flatten_dotted(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr_g": 1}} -> {"train.lr_g": 1}; an empty mapping stays a value of its own."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_dotted(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def select_params(params: Params, keys: Sequence[str]) -> dict[str, Any]:
    """The dotted `keys` ("train" for a section, "base.paths.raw" for a key in one) as nested plain data."""
    dumped = params.model_dump(mode="json")
    selected: dict[str, Any] = {}
    for dotted in keys:
        *parents, last = dotted.split(".")
        source, target = dumped, selected
        for key in parents:
            source, target = source[key], target.setdefault(key, {})
        target[last] = source[last]
    return selected


def write_resolved_params(
    params: Params, out_dir: str | Path, keys: Sequence[str] | None = None, filename: str = "params.json",
    run: Mapping[str, Any] | None = None,
) -> Path:
    """Record the parameters a stage ran with, beside its outputs: `keys` (dotted), or all of them.

    A stage records exactly what it depends on (STAGE_PARAMS[stage]): its
    output directory may be a DVC dependency of later stages, and an
    unrelated edit must not change that directory's hash. `run`, when given,
    is recorded under the key "run": what the stage decided or found as it ran
    (the training code's digests, say), which is not a parameter.
    """
    data = select_params(params, keys) if keys is not None else params.model_dump(mode="json")
    if run is not None:
        data["run"] = dict(run)
    # Atomic: a full disk is then a DiskFullError naming this file, and never leaves half a record.
    return atomic_write_text(Path(out_dir) / filename, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _drop_dotted(data: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    node.pop(last, None)


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsError(f"{path}: parameter file not found (run from the repository root, or pass --params PATH)")
    data = _read_yaml(path, "parameter file")
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections (base, preprocess, ...), got {type(data).__name__}")
    return data


def _read_yaml(path: Path, what: str) -> Any:
    """The YAML document in `path`; `what` names the file in errors (a parameter file, the presets file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    try:
        return _parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_ParamsYamlLoader)  # a SafeLoader: no object construction


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid parameters ({exc.error_count()} problem(s)):"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key (typo? remove it or check the section it belongs to)"
        elif error["type"] == "missing":
            message = "missing key (every parameter must be set in params.yaml)"
        elif error["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif error["type"] in ("int_type", "float_type") and isinstance(error.get("input"), str):
            message += " (this is quoted text: write the number without quotes)"
        # A check across keys gets the whole section as input: its message names the keys instead.
        shown = error["type"] != "missing" and not isinstance(error.get("input"), dict)
        got = f" (got {error.get('input')!r})" if shown else ""
        # A check across sections (loc empty) names its keys in the message itself.
        lines.append(f"  {key}: {message}{got}" if key else f"  {message}{got}")
    return "\n".join(lines)


def _known(node: Any) -> str:
    return ", ".join(sorted(node)) if isinstance(node, dict) else "(none)"
