"""The evaluation stage: score the trained EMA generator; compare two datasets.

    evaluate_generator(params, log, root)        generator.pt -> metrics.json (+ params.json)
    score_generator(G, info, params, log, root)  the same scores for a module in memory, no files
    compare_datasets(a, b, params, log, root)    FID/KID between two prepared datasets

Everything runs offline: extractor weights come from `make weights`, IS
weights only from disk, and the real side comes from the reference cache
whenever the data and settings match.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn as nn

from ganlib.config import STAGE_PARAMS, EvaluateParams, Params, select_params
from ganlib.data.dataset import PreparedDataset, open_prepared
from ganlib.hardware.device import resolve_device
from ganlib.io.atomic import atomic_write_json, staged_directory
from ganlib.logs import Logger
from ganlib.metrics.errors import EvaluationError
from ganlib.metrics.extractors import (
    IS_LOGITS,
    TORCH_FIDELITY_INCEPTION,
    build_extractor,
    dinov2_extractor_spec,
    is_extractor_spec,
)
from ganlib.metrics.features import generator_features
from ganlib.metrics.reference import ReferenceStats, reference_statistics
from ganlib.metrics.report import METRICS_FILE, DatasetComparison, EvaluationReport, render_table
from ganlib.metrics.scores import (
    FidUncertainty,
    InceptionScore,
    KidScore,
    PrecisionRecall,
    fid_from_features,
    fid_from_statistics,
    fid_uncertainty,
    inception_score_from_logits,
    kid_from_features,
    precision_recall_from_features,
)
from ganlib.metrics.sources import SeededGenerator, eval_mode
from ganlib.metrics.speed import extractor_for_device
from ganlib.metrics.weight_files import find_is_inception_weights

GENERATOR_FILE = "generator.pt"
PARAMS_RECORD_FILE = "params.json"


class GeneratorInfo(Protocol):
    """What evaluation reads from ganlib.models.generator_file's GeneratorInfo."""

    z_dim: int
    resolution: int
    kimg: float
    data_md5: str | None
    dataset_sha256: str | None


def evaluation_device(setting: str) -> torch.device:
    """evaluate.device -> torch device; an explicit cuda that is absent is an error, not a silent fallback."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve_device(setting, "evaluate.device")


def evaluate_generator(params: Params, log: Logger, root: Path) -> EvaluationReport:
    """Score root/<paths.train>/generator.pt and write metrics.json and params.json to <paths.evaluate>."""
    from ganlib.models.generator_file import load_generator  # the training side's file format

    root = Path(root)
    device = evaluation_device(params.evaluate.device)
    generator_path = root / params.base.paths.train / GENERATOR_FILE
    if not generator_path.is_file():
        raise EvaluationError(
            f"{generator_path}: no trained generator; run the train stage first (`dvc repro train` or `scenegan run train`)"
        )
    generator, info = load_generator(generator_path, device)
    report = score_generator(generator, info, params, log, root, device)
    write_evaluation(report, params, root / params.base.paths.evaluate)
    log.info("evaluation:\n" + render_table(report.report_rows()))
    return report


def write_evaluation(report: EvaluationReport, params: Params, out_dir: Path) -> Path:
    """metrics.json and params.json, swapped into place together (never one without the other)."""
    with staged_directory(out_dir) as staging:
        atomic_write_json(staging / METRICS_FILE, report.to_json())
        atomic_write_json(staging / PARAMS_RECORD_FILE, select_params(params, STAGE_PARAMS["evaluate"]))
    return Path(out_dir) / METRICS_FILE


def score_generator(
    generator: nn.Module,
    info: GeneratorInfo,
    params: Params,
    log: Logger,
    root: Path,
    device: torch.device | None = None,
) -> EvaluationReport:
    """Every metric in evaluate.metrics for `generator` against the prepared dataset; writes only the cache."""
    settings = params.evaluate
    root = Path(root)
    device = device or evaluation_device(settings.device)
    wanted = set(settings.metrics)
    if not wanted:
        raise EvaluationError("evaluate.metrics is empty: list at least one of fid, kid, is, prc, fd_dinov2")
    dataset = open_prepared(root / params.base.paths.prepared)
    _check_generator_matches_dataset(info, dataset, log)
    spec = extractor_for_device(settings, root / params.base.paths.weights, root, device, log)

    is_weights, is_unavailable_reason = (None, None)
    if "is" in wanted:
        is_weights, is_unavailable_reason = find_is_inception_weights(
            settings.inception_weights, root, root / params.base.paths.weights
        )
        if is_unavailable_reason:
            log.warning(f"Inception Score unavailable: {is_unavailable_reason}")
    # torch-fidelity's own Inception gives pool features and IS logits in one pass.
    share_is_pass = is_weights is not None and spec.name == TORCH_FIDELITY_INCEPTION
    layers = [spec.feature_layer] + ([IS_LOGITS] if share_is_pass else [])
    make_extractor = functools.cache(lambda: build_extractor(spec, layers, device))

    reference, cached = None, False
    if wanted & {"fid", "kid", "prc"}:
        reference, cached = reference_statistics(
            dataset, spec, make_extractor, settings.n_reference, settings.seed, settings.batch_size, device,
            root / params.base.paths.fid_cache, log,
        )

    started = time.perf_counter()
    fake: dict[str, torch.Tensor] = {}
    with eval_mode(generator):
        model = SeededGenerator(generator, info.z_dim, info.resolution)
        if reference is not None or share_is_pass:
            fake = generator_features(model, make_extractor(), settings.n_samples, settings.batch_size, settings.seed, device)
        if is_weights is not None and not share_is_pass:
            is_extractor = build_extractor(is_extractor_spec(is_weights), [IS_LOGITS], device)
            fake[IS_LOGITS] = generator_features(
                model, is_extractor, settings.n_samples, settings.batch_size, settings.seed, device
            )[IS_LOGITS]
    log.info(f"generated features: {settings.n_samples} samples in {time.perf_counter() - started:.1f} s on {device}")
    fd_dinov2, fd_dinov2_unavailable_reason = (
        _fd_dinov2(generator, info, dataset, params, root, device, log) if "fd_dinov2" in wanted else (None, None)
    )

    scores = _scores(fake, reference, spec.feature_layer, settings, wanted)
    infinity_reason = scores.uncertainty.infinity_unavailable_reason if scores.uncertainty else None
    for note in (*scores.notes, *([infinity_reason] if infinity_reason else [])):
        log.warning(note)
    return EvaluationReport(
        fid=scores.fid,
        kid_mean=None if scores.kid is None else scores.kid.mean,
        kid_std=None if scores.kid is None else scores.kid.std,
        kid_subset_size=None if scores.kid is None else scores.kid.subset_size,
        is_mean=None if scores.inception is None else scores.inception.mean,
        is_std=None if scores.inception is None else scores.inception.std,
        is_unavailable_reason=is_unavailable_reason,
        precision=None if scores.prc is None else scores.prc.precision,
        recall=None if scores.prc is None else scores.prc.recall,
        n_samples=settings.n_samples,
        n_reference=0 if reference is None else reference.count,
        batch_size=settings.batch_size,
        seed=settings.seed,
        extractor=spec.identity(),
        extractor_description=spec.description,
        data_md5=dataset.data_md5,
        dataset_sha256=dataset.content_hash,
        checkpoint_kimg=None if info.kimg is None else float(info.kimg),
        resolution=dataset.resolution,
        reference_stats_cached=cached,
        device=str(device),
        notes=scores.notes,
        fd_dinov2=fd_dinov2,
        fd_dinov2_unavailable_reason=fd_dinov2_unavailable_reason,
        **_uncertainty_fields(scores.uncertainty),
    )


def _fd_dinov2(
    generator: nn.Module, info: GeneratorInfo, dataset: PreparedDataset, params: Params, root: Path,
    device: torch.device, log: Logger,
) -> tuple[float | None, str | None]:
    """FD_DINOv2 (Stein et al. 2023): the FID formula on DINOv2 ViT-B/14 features, same samples and reference subset.

    (None, reason) when the weights are not installed: reported, like IS, never downloaded.
    """
    settings = params.evaluate
    spec, reason = dinov2_extractor_spec(root / params.base.paths.weights)
    if spec is None:
        log.warning(f"FD_DINOv2 unavailable: {reason}")
        return None, reason
    make_extractor = functools.cache(lambda: build_extractor(spec, [spec.feature_layer], device))
    reference, _ = reference_statistics(
        dataset, spec, make_extractor, settings.n_reference, settings.seed, settings.batch_size, device,
        root / params.base.paths.fid_cache, log,
    )
    with eval_mode(generator):
        model = SeededGenerator(generator, info.z_dim, info.resolution)
        fake = generator_features(model, make_extractor(), settings.n_samples, settings.batch_size, settings.seed, device)
    return fid_from_features(fake[spec.feature_layer], reference.fid_statistics), None


def compare_datasets(a: Path, b: Path, params: Params, log: Logger, root: Path) -> DatasetComparison:
    """FID (and KID, if in evaluate.metrics) between two prepared datasets, through the same stats cache."""
    settings = params.evaluate
    root = Path(root)
    device = evaluation_device(settings.device)
    first, second = open_prepared(a), open_prepared(b)
    if first.resolution != second.resolution:
        raise EvaluationError(
            f"{a} is {first.resolution}px but {b} is {second.resolution}px; FID between them would mostly measure "
            "the resize. Prepare both at the same preprocess.resolution."
        )
    spec = extractor_for_device(settings, root / params.base.paths.weights, root, device, log)
    make_extractor = functools.cache(lambda: build_extractor(spec, [spec.feature_layer], device))
    cache_dir = root / params.base.paths.fid_cache
    stats = [
        reference_statistics(
            dataset, spec, make_extractor, settings.n_reference, settings.seed, settings.batch_size, device, cache_dir, log
        )
        for dataset in (first, second)
    ]
    (ref_a, cached_a), (ref_b, cached_b) = stats
    notes: list[str] = []
    kid = None
    if "kid" in settings.metrics:
        kid = kid_from_features(ref_a.features, ref_b.features, settings.kid_subsets, settings.kid_subset_size, settings.seed)
        if kid.note:
            notes.append(kid.note)
            log.warning(kid.note)
    return DatasetComparison(
        fid=fid_from_statistics(ref_a.fid_statistics, ref_b.fid_statistics),
        kid_mean=None if kid is None else kid.mean,
        kid_std=None if kid is None else kid.std,
        kid_subset_size=None if kid is None else kid.subset_size,
        n_a=ref_a.count,
        n_b=ref_b.count,
        seed=settings.seed,
        extractor=spec.identity(),
        extractor_description=spec.description,
        data_md5_a=first.data_md5,
        data_md5_b=second.data_md5,
        dataset_sha256_a=first.content_hash,
        dataset_sha256_b=second.content_hash,
        resolution=first.resolution,
        reference_stats_cached=(cached_a, cached_b),
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class _Scores:
    fid: float | None
    kid: KidScore | None
    inception: InceptionScore | None
    prc: PrecisionRecall | None
    notes: tuple[str, ...]  # every setting that had to be reduced, in words
    uncertainty: FidUncertainty | None = None  # FID's sampling-noise band and FID-infinity


def _scores(
    fake: dict[str, torch.Tensor], reference: ReferenceStats | None, layer: str, settings: EvaluateParams, wanted: set[str]
) -> _Scores:
    features = fake.get(layer)
    fid = fid_from_features(features, reference.fid_statistics) if "fid" in wanted else None
    kid = (
        kid_from_features(features, reference.features, settings.kid_subsets, settings.kid_subset_size, settings.seed)
        if "kid" in wanted else None
    )
    prc = precision_recall_from_features(features, reference.features, settings.prc_neighborhood) if "prc" in wanted else None
    inception = inception_score_from_logits(fake[IS_LOGITS], settings.isc_splits, settings.seed) if IS_LOGITS in fake else None
    notes = tuple(part.note for part in (kid, prc, inception) if part is not None and part.note)
    uncertainty = (
        fid_uncertainty(features, reference.fid_statistics, settings.fid_bootstrap, settings.fid_infinity, settings.seed)
        if "fid" in wanted else None
    )
    return _Scores(fid, kid, inception, prc, notes, uncertainty)


def _uncertainty_fields(uncertainty: FidUncertainty | None) -> dict[str, float | int | str | None]:
    """EvaluationReport's fid_noise_* / fid_infinity / its unavailable reason (None: not computed)."""
    band = uncertainty.band if uncertainty else None
    infinity = uncertainty.infinity if uncertainty else None
    return {
        "fid_noise_low": None if band is None else band.low,
        "fid_noise_high": None if band is None else band.high,
        "fid_noise_bias": None if band is None else band.bias,
        "fid_noise_resamples": None if band is None else band.resamples,
        "fid_noise_n": None if band is None else band.n,
        "fid_infinity": None if infinity is None else infinity.value,
        "fid_infinity_unavailable_reason": uncertainty.infinity_unavailable_reason if uncertainty else None,
    }


def _check_generator_matches_dataset(info: GeneratorInfo, dataset: PreparedDataset, log: Logger) -> None:
    if int(info.resolution) != dataset.resolution:
        raise EvaluationError(
            f"the generator makes {info.resolution}px images but the prepared dataset at {dataset.root} is "
            f"{dataset.resolution}px; re-run preprocess at the training resolution or retrain"
        )
    trained_on = getattr(info, "dataset_sha256", None)
    if trained_on and trained_on != dataset.content_hash:
        log.warning(
            f"the generator was trained on images sha256 {trained_on[:12]} but is scored against "
            f"{dataset.content_hash[:12]} ({dataset.root}): a different dataset version"
        )
