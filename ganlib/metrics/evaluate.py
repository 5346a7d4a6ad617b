"""The evaluation stage: score the trained EMA generator; compare two datasets.

    evaluate_generator(params, log, root)          generator.pt -> metrics.json (numbers), evaluation.json
                                                   (provenance), memorisation.json, truncation.json (+ params.json,
                                                   scores/: the numbers as DVC's metrics, one file per metric)
    measure_generator(G, info, params, log, root)  all of that for a module in memory, no files
    score_generator(G, info, params, log, root)    metrics.json's scores only (no truncation table)
    compare_datasets(a, b, params, log, root)      FID/KID between two prepared datasets

A class-conditional generator's overall samples are drawn in the data's class
proportions, and each class is also scored on its own (ganlib/metrics/per_class.py).

Precision/recall/density/coverage, the memorisation check and every row of
the truncation table reuse the features FID extracts (generated ones once
per psi, real ones from the reference cache): no image goes through the
extractor twice.

Everything runs offline: extractor weights come from `make weights`, IS
weights only from disk, and the real side comes from the reference cache
whenever the data and settings match.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn as nn

from ganlib.config import STAGE_PARAMS, EvaluateParams, Params, select_params
from ganlib.data.dataset import PreparedDataset, open_prepared
from ganlib.hardware.device import resolve_device
from ganlib.io.atomic import atomic_write_json, atomic_write_text, staged_directory
from ganlib.logs import Logger
from ganlib.metrics.dvc_scores import SCORES_DIR, dvc_score_files
from ganlib.metrics.errors import EvaluationError
from ganlib.metrics.extractors import (
    IS_LOGITS,
    TORCH_FIDELITY_INCEPTION,
    build_extractor,
    dinov2_extractor_spec,
    is_extractor_spec,
)
from ganlib.metrics.features import generator_features
from ganlib.metrics.knn_scores import GeneratedPixels, KnnScores, knn_scores
from ganlib.metrics.memorisation import MEMORISATION_FILE, MemorisationCheck, memorisation_record
from ganlib.metrics.per_class import PerClassResult, per_class_from_samples, per_class_scores, per_class_unavailable_reason
from ganlib.metrics.pixels import PixelKeepingGenerator, pixel_side
from ganlib.metrics.prdc import Prdc
from ganlib.metrics.reference import ReferenceStats, reference_statistics
from ganlib.metrics.sample_labels import SampleLabelling, sample_labelling
from ganlib.metrics.report import METRICS_FILE, PROVENANCE_FILE, DatasetComparison, EvaluationReport, render_table
from ganlib.metrics.scores import (
    FidUncertainty,
    InceptionScore,
    KidScore,
    fid_from_features,
    fid_from_statistics,
    fid_uncertainty,
    inception_score_from_logits,
    kid_from_features,
)
from ganlib.metrics.sources import SeededGenerator, eval_mode, reference_indices
from ganlib.metrics.speed import extractor_for_device
from ganlib.metrics.truncation_table import (
    TRUNCATION_FILE,
    TruncatedGenerator,
    TruncationRow,
    table_psis,
    truncation_record,
    truncation_table_rows,
)
from ganlib.metrics.weight_files import find_dinov2_weights, find_is_inception_weights

GENERATOR_FILE = "generator.pt"
PARAMS_RECORD_FILE = "params.json"


class GeneratorInfo(Protocol):
    """What evaluation reads from ganlib.models.generator_file's GeneratorInfo."""

    z_dim: int
    resolution: int
    kimg: float
    data_md5: str | None
    dataset_sha256: str | None
    # A class-conditional generator's class names in label order (ganlib.models.generator_file); read with
    # getattr(..., "classes", ()), so an info without it (an unconditional generator's) is fine.


def evaluation_device(setting: str) -> torch.device:
    """evaluate.device -> torch device; an explicit cuda that is absent is an error, not a silent fallback."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve_device(setting, "evaluate.device")


@dataclass(frozen=True)
class Evaluation:
    """What the evaluate stage writes: metrics.json and evaluation.json (report), memorisation.json, truncation.json."""

    report: EvaluationReport
    memorisation: MemorisationCheck | None
    memorisation_reason: str | None           # why there is no check (None when there is one)
    truncation: tuple[TruncationRow, ...]     # psi 1.0 (the report's numbers) first
    z_dim: int                                # of the latents the samples were made from


def evaluate_generator(params: Params, log: Logger, root: Path) -> EvaluationReport:
    """Score root/<paths.train>/generator.pt; write metrics.json, evaluation.json, memorisation.json,
    truncation.json and params.json to <paths.evaluate>."""
    from ganlib.models.generator_file import load_generator  # the training side's file format

    root = Path(root)
    device = evaluation_device(params.evaluate.device)
    generator_path = root / params.base.paths.train / GENERATOR_FILE
    if not generator_path.is_file():
        raise EvaluationError(
            f"{generator_path}: no trained generator; run the train stage first (`dvc repro train` or `scenegan run train`)"
        )
    generator, info = load_generator(generator_path, device)
    evaluation = measure_generator(generator, info, params, log, root, device)
    write_evaluation(evaluation, params, root / params.base.paths.evaluate)
    log.info("evaluation:\n" + render_table(evaluation.report.report_rows()))
    if per_class := evaluation.report.per_class_section():
        log.info("\n".join(per_class))
    if len(evaluation.truncation) > 1:
        log.info("truncation (quality/diversity trade-off; psi 1.0 is the evaluation above; rows in "
                 f"{TRUNCATION_FILE}):\n" + render_table(truncation_table_rows(evaluation.truncation)))
    return evaluation.report


def write_evaluation(evaluation: Evaluation, params: Params, out_dir: Path) -> Path:
    """metrics.json, evaluation.json, memorisation.json, truncation.json, params.json and scores/ (DVC's
    metrics, ganlib/metrics/dvc_scores.py), swapped into place together; returns metrics.json's path."""
    report = evaluation.report
    metrics = report.metrics_json()
    # The whole folder is rebuilt, scores/ included: a metric no longer computed leaves no stale file behind.
    with staged_directory(out_dir) as staging:
        atomic_write_json(staging / METRICS_FILE, metrics)
        (staging / SCORES_DIR).mkdir()
        for name, scores in dvc_score_files(metrics).items():
            # Keys in their own order, not sorted: `dvc exp show` makes its columns in file order (value first).
            atomic_write_text(staging / SCORES_DIR / name, json.dumps(scores, indent=2) + "\n")
        atomic_write_json(staging / PROVENANCE_FILE, report.provenance_json())
        atomic_write_json(
            staging / MEMORISATION_FILE, memorisation_record(evaluation.memorisation, evaluation.memorisation_reason)
        )
        atomic_write_json(staging / TRUNCATION_FILE, truncation_record(
            evaluation.truncation, report.n_samples, report.n_reference, report.seed, evaluation.z_dim,
            report.extractor, report.prdc_k,
        ))
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
    """Every metric in evaluate.metrics for `generator` against the prepared dataset; writes only the cache.

    The truncation table's other rows (evaluate.truncation) and a conditional
    generator's per-class scores are not made: each costs more images through
    the extractor (measure_generator makes them). The overall scores are the same.
    """
    return _measure(generator, info, params, log, root, device, full=False).report


def measure_generator(
    generator: nn.Module,
    info: GeneratorInfo,
    params: Params,
    log: Logger,
    root: Path,
    device: torch.device | None = None,
) -> Evaluation:
    """score_generator's report, the memorisation check's details, a row per evaluate.truncation psi and,
    for a class-conditional generator, FID/KID per class."""
    return _measure(generator, info, params, log, root, device, full=True)


def _measure(
    generator: nn.Module,
    info: GeneratorInfo,
    params: Params,
    log: Logger,
    root: Path,
    device: torch.device | None,
    full: bool,
) -> Evaluation:
    settings = params.evaluate
    root = Path(root)
    device = device or evaluation_device(settings.device)
    wanted = set(settings.metrics)
    if not wanted:
        raise EvaluationError(
            "evaluate.metrics is empty: list at least one of fid, kid, is, prdc, memorisation, fd_dinov2"
        )
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
    if wanted & REFERENCE_METRICS:
        reference, cached = reference_statistics(
            dataset, spec, make_extractor, settings.n_reference, settings.seed, settings.batch_size, device,
            root / params.base.paths.fid_cache, log,
        )

    started = time.perf_counter()
    psis = table_psis(settings.truncation)[1:] if full and wanted & TRUNCATION_METRICS else []
    generator_classes = tuple(getattr(info, "classes", ()) or ())
    # A conditional generator's samples are drawn in the data's class proportions (the reference is the whole
    # dataset's); None for an unconditional one, whose samples are made exactly as before.
    labelling = sample_labelling(generator_classes, dataset, settings.seed)
    with eval_mode(generator):
        model = SeededGenerator(generator, info.z_dim, info.resolution, labelling)
        # The memorisation check's pixels are kept as the features' images are made: no second generator pass.
        measured = (PixelKeepingGenerator(generator, info.z_dim, info.resolution, pixel_side(info.resolution), labelling)
                    if "memorisation" in wanted else model)
        fake: dict[str, torch.Tensor] = {}
        if reference is not None or share_is_pass:
            fake = generator_features(measured, make_extractor(), settings.n_samples, settings.batch_size, settings.seed, device)
        if is_weights is not None and not share_is_pass:
            is_extractor = build_extractor(is_extractor_spec(is_weights), [IS_LOGITS], device)
            fake[IS_LOGITS] = generator_features(
                model, is_extractor, settings.n_samples, settings.batch_size, settings.seed, device
            )[IS_LOGITS]
        truncated = {
            psi: generator_features(
                TruncatedGenerator(generator, info.z_dim, info.resolution, psi, labelling), make_extractor(),
                settings.n_samples, settings.batch_size, settings.seed, device,
            )[spec.feature_layer]
            for psi in psis
        }
    at_psis = f" at each of {len(psis) + 1} truncation psi" if psis else ""
    log.info(f"generated features: {settings.n_samples} samples{at_psis} in {time.perf_counter() - started:.1f} s on {device}")
    fd_dinov2, fd_dinov2_unavailable_reason = (
        _fd_dinov2(generator, info, dataset, params, root, device, log, labelling) if "fd_dinov2" in wanted
        else (None, None)
    )
    classes_unavailable = (per_class_unavailable_reason(generator_classes, dataset, settings, wanted)
                           if labelling is not None else None)
    by_class = None
    if labelling is not None and full and classes_unavailable is None:
        started = time.perf_counter()
        if settings.per_class_samples is None:  # the overall samples and reference, split by class: no extra pass
            by_class = per_class_from_samples(
                fake[spec.feature_layer], labelling(settings.n_samples), reference,
                reference_indices(dataset.count, settings.n_reference, settings.seed), generator_classes, dataset,
                settings, wanted)
        else:
            by_class = per_class_scores(generator, info.z_dim, info.resolution, generator_classes, dataset, spec,
                                        make_extractor, settings, wanted, root / params.base.paths.fid_cache, device,
                                        log)
        log.info(f"per-class scores ({len(by_class.scores)} classes) in {time.perf_counter() - started:.1f} s on {device}")

    scores = _scores(fake, reference, spec.feature_layer, settings, wanted)
    knn = KnnScores(None, None, {psi: None for psi in psis})
    if reference is not None and wanted & {"prdc", "memorisation"}:
        started = time.perf_counter()
        pixels = (GeneratedPixels(measured.kept_pixels(), measured.side, int(info.z_dim))
                  if isinstance(measured, PixelKeepingGenerator) else None)
        knn = knn_scores(fake[spec.feature_layer], truncated, reference, pixels, dataset, spec.description,
                         settings, wanted, device)
        log.info(f"nearest-neighbour scores ({', '.join(sorted(wanted & {'prdc', 'memorisation'}))}) in "
                 f"{time.perf_counter() - started:.1f} s on {device}")
        if knn.memorisation is not None:
            log.info(knn.memorisation.summary())
    notes = (*scores.notes, *([knn.prdc.note] if knn.prdc is not None and knn.prdc.note else []),
             *(by_class.notes if by_class is not None else ()))
    infinity_reason = scores.uncertainty.infinity_unavailable_reason if scores.uncertainty else None
    for note in (*notes, *([infinity_reason] if infinity_reason else [])):
        log.warning(note)
    report = EvaluationReport(
        fid=scores.fid,
        kid_mean=None if scores.kid is None else scores.kid.mean,
        kid_std=None if scores.kid is None else scores.kid.std,
        kid_subset_size=None if scores.kid is None else scores.kid.subset_size,
        is_mean=None if scores.inception is None else scores.inception.mean,
        is_std=None if scores.inception is None else scores.inception.std,
        is_unavailable_reason=is_unavailable_reason,
        precision=None if knn.prdc is None else knn.prdc.precision,
        recall=None if knn.prdc is None else knn.prdc.recall,
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
        notes=notes,
        fd_dinov2=fd_dinov2,
        fd_dinov2_unavailable_reason=fd_dinov2_unavailable_reason,
        **_uncertainty_fields(scores.uncertainty),
        **_prdc_fields(knn.prdc),
        **_memorisation_fields(knn.memorisation),
        **_class_fields(labelling, by_class, classes_unavailable, dataset, settings.n_samples, full),
    )
    rows = [_truncation_row(1.0, scores, knn.prdc)] + [
        _truncation_row(psi, _scores({spec.feature_layer: features}, reference, spec.feature_layer, settings,
                                     wanted & TRUNCATION_METRICS, with_uncertainty=False), knn.truncated[psi])
        for psi, features in truncated.items()
    ]
    reason = None if knn.memorisation is not None else "memorisation is not in evaluate.metrics"
    return Evaluation(report, knn.memorisation, reason, tuple(rows), int(info.z_dim))


def _fd_dinov2(
    generator: nn.Module, info: GeneratorInfo, dataset: PreparedDataset, params: Params, root: Path,
    device: torch.device, log: Logger, labelling: SampleLabelling | None = None,
) -> tuple[float | None, str | None]:
    """FD_DINOv2 (Stein et al. 2023): the FID formula on DINOv2 ViT-B/14 features, same samples and reference subset.

    (None, reason) when the weights are not installed: reported, like IS, never downloaded.
    """
    settings = params.evaluate
    spec, reason = dinov2_extractor_spec(root / params.base.paths.weights)
    if spec is None:
        # The same check again, its reason naming the file as params.yaml does (the reason is recorded in git).
        reason = find_dinov2_weights(root / params.base.paths.weights, root)[1] or reason
        log.warning(f"FD_DINOv2 unavailable: {reason}")
        return None, reason
    make_extractor = functools.cache(lambda: build_extractor(spec, [spec.feature_layer], device))
    reference, _ = reference_statistics(
        dataset, spec, make_extractor, settings.n_reference, settings.seed, settings.batch_size, device,
        root / params.base.paths.fid_cache, log,
    )
    with eval_mode(generator):
        model = SeededGenerator(generator, info.z_dim, info.resolution, labelling)
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


# The metrics that need the reference features, and those the truncation table reports per psi.
REFERENCE_METRICS = frozenset({"fid", "kid", "prdc", "memorisation"})
TRUNCATION_METRICS = frozenset({"fid", "kid", "prdc"})


@dataclass(frozen=True)
class _Scores:
    fid: float | None
    kid: KidScore | None
    inception: InceptionScore | None
    notes: tuple[str, ...]  # every setting that had to be reduced, in words
    uncertainty: FidUncertainty | None = None  # FID's sampling-noise band and FID-infinity


def _scores(
    fake: dict[str, torch.Tensor], reference: ReferenceStats | None, layer: str, settings: EvaluateParams,
    wanted: set[str], with_uncertainty: bool = True,
) -> _Scores:
    features = fake.get(layer)
    fid = fid_from_features(features, reference.fid_statistics) if "fid" in wanted else None
    kid = (
        kid_from_features(features, reference.features, settings.kid_subsets, settings.kid_subset_size, settings.seed)
        if "kid" in wanted else None
    )
    inception = inception_score_from_logits(fake[IS_LOGITS], settings.isc_splits, settings.seed) if IS_LOGITS in fake else None
    notes = tuple(part.note for part in (kid, inception) if part is not None and part.note)
    uncertainty = (
        fid_uncertainty(features, reference.fid_statistics, settings.fid_bootstrap, settings.fid_infinity, settings.seed)
        if "fid" in wanted and with_uncertainty else None
    )
    return _Scores(fid, kid, inception, notes, uncertainty)


def _truncation_row(psi: float, scores: _Scores, prdc: Prdc | None) -> TruncationRow:
    return TruncationRow(
        psi=psi,
        fid=scores.fid,
        kid_mean=None if scores.kid is None else scores.kid.mean,
        kid_std=None if scores.kid is None else scores.kid.std,
        precision=None if prdc is None else prdc.precision,
        recall=None if prdc is None else prdc.recall,
        density=None if prdc is None else prdc.density,
        coverage=None if prdc is None else prdc.coverage,
    )


def _prdc_fields(prdc: Prdc | None) -> dict[str, float | int | None]:
    """EvaluationReport's density / coverage / prdc_k (None: not computed)."""
    if prdc is None or prdc.precision is None:
        return {"density": None, "coverage": None, "prdc_k": None}
    return {"density": prdc.density, "coverage": prdc.coverage, "prdc_k": prdc.k}


def _memorisation_fields(check: MemorisationCheck | None) -> dict[str, float | int | None]:
    """EvaluationReport's memorisation figures (None: not computed)."""
    if check is None:
        return {"memorisation": None, "memorisation_pixels": None, "memorisation_baseline": None, "memorisation_n": None}
    return {
        "memorisation": check.features.memorisation,
        "memorisation_pixels": check.pixels.memorisation,
        "memorisation_baseline": check.baseline,
        "memorisation_n": check.images.n_samples,
    }


def _class_fields(
    labelling: SampleLabelling | None, by_class: PerClassResult | None, unavailable: str | None,
    dataset: PreparedDataset, n_samples: int, full: bool,
) -> dict[str, object]:
    """EvaluationReport's class keys: none for an unconditional generator (its files stay as they were)."""
    if labelling is None:
        return {}
    fields: dict[str, object] = {"sample_labelling": labelling.description(n_samples),
                                 "sample_class_counts": labelling.counts(n_samples)}
    if not full:   # score_generator: the overall scores only
        return fields
    fields["classes"] = dataset.class_names
    if by_class is None:
        return {**fields, "per_class_unavailable_reason": unavailable}
    return {
        **fields,
        "per_class": {score.name: score.metrics() for score in by_class.scores},
        "per_class_how": by_class.how,
        "per_class_reasons": {score.name: score.reason for score in by_class.scores if score.reason},
    }


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
