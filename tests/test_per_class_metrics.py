"""Per-class evaluation of a class-conditional generator, and compare's per-class columns (issue 22, item 4).

Toys with known answers, on the tiny registered extractor: two classes of
clearly different colours, and "generators" that hand back real images. One
that returns class c's own images for label c scores per-class FID ~0 in
every class; one that swaps the classes scores a large per-class FID though
its overall FID, on samples labelled in the data's (equal) proportions, stays
~0. The overall labelling itself is checked: drawn in the data's proportions,
the same for every batch size and run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from test_metrics_support import TinyGenerator, TinyInfo, smooth_images, tiny_params, write_prepared_dataset

from flows.results import compare_result, stage_lines
from flows.summary import pipeline_summary
from ganlib.data.dataset import LABELS_FILE, MANIFEST_FILE
from ganlib.logs import plain_logger
from ganlib.metrics.dvc_scores import dvc_score_files
from ganlib.metrics.evaluate import measure_generator, write_evaluation
from ganlib.metrics.features import generator_features
from ganlib.metrics.sample_labels import largest_remainder, proportional_labels
from ganlib.metrics.report import read_evaluation
from ganlib.metrics.sources import SeededGenerator
from ganlib.versions.compare import Comparison, VersionRow

LOG = plain_logger("scenegan-tests")
RESOLUTION, Z_DIM = 16, 8


def tinted(n: int, seed: int, channel: int) -> np.ndarray:
    """Smooth colour fields with one channel pushed up: the two classes differ at a glance, and in features."""
    images = smooth_images(n, seed, RESOLUTION).astype(np.int32) // 2
    images[..., channel] += 120
    return images.clip(0, 255).astype(np.uint8)


def write_labelled_dataset(root: Path, per_class: dict[str, np.ndarray]) -> Path:
    """A prepared dataset with labels.npy and the manifest's class keys, as preprocess writes them."""
    images = np.concatenate(list(per_class.values()))
    labels = np.concatenate([np.full(len(v), i, dtype=np.int32) for i, v in enumerate(per_class.values())])
    write_prepared_dataset(root, images)
    np.save(root / LABELS_FILE, labels)
    manifest = json.loads((root / MANIFEST_FILE).read_text())
    manifest.update(classes=list(per_class), class_counts={k: len(v) for k, v in per_class.items()},
                    labels_sha256=hashlib.sha256((root / LABELS_FILE).read_bytes()).hexdigest(),
                    labels_source="folders")
    (root / MANIFEST_FILE).write_text(json.dumps(manifest))
    return root


class RealImageGenerator(nn.Module):
    """A "generator" whose label-c output is class c's real images, each in turn (class `swap[c]`'s, if given).

    It counts per class, so every pass that asks for a whole number of a class's images gets that
    class exactly once each: FID of such a set against the class's real images is 0.
    """

    def __init__(self, per_class: dict[str, np.ndarray], swap: dict[int, int] | None = None):
        super().__init__()
        self.images = [torch.from_numpy(v).permute(0, 3, 1, 2).float() / 127.5 - 1 for v in per_class.values()]
        self.swap = swap or {}
        self.served = [0] * len(self.images)
        self.seen_labels: list[torch.Tensor] = []

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        assert labels is not None, "a conditional generator is always given its samples' labels in evaluation"
        self.seen_labels.append(labels.cpu())
        out = []
        for label in labels.tolist():
            pool = self.images[self.swap.get(label, label)]
            out.append(pool[self.served[label] % len(pool)])
            self.served[label] += 1
        return torch.stack(out).to(z.device)


@dataclass
class ConditionalInfo(TinyInfo):
    classes: tuple[str, ...] = ("blue", "red")


def params_for(n_samples: int, per_class_samples: int | str, *more: str):
    return tiny_params(f"evaluate.n_samples={n_samples}", f"evaluate.per_class_samples={per_class_samples}",
                       "evaluate.per_class_min_images=20", "evaluate.n_reference=0", "evaluate.fid_bootstrap=20",
                       "evaluate.kid_subset_size=20", "evaluate.truncation=[1.0]", *more)


def labelled_project(tmp_path: Path, per_class: dict[str, np.ndarray]) -> Path:
    write_labelled_dataset(tmp_path / tiny_params().base.paths.prepared, per_class)
    return tmp_path


@pytest.mark.parametrize("per_class_samples", ["null", 40], ids=["from-the-evaluation", "fresh-samples"])
def test_per_class_fid_is_zero_for_each_class_and_large_when_the_generator_swaps_them(tmp_path, per_class_samples):
    """From the evaluation's own samples and reference (null), or from fresh samples of each class (40)."""
    classes = {"blue": tinted(40, 1, 2), "red": tinted(40, 2, 0)}
    root = labelled_project(tmp_path, classes)
    params = params_for(80, per_class_samples)

    honest = measure_generator(RealImageGenerator(classes), ConditionalInfo(), params, LOG, root).report
    assert honest.fid < 1e-3   # the whole dataset, once each, against its own statistics
    for name in classes:
        scores = honest.per_class[name]
        assert scores["fid"] < 1e-3 and scores["n_samples"] == 40 and scores["n_real"] == 40
        assert scores["fid_low"] <= scores["fid_high"] and "kid" in scores and "kid_std" in scores
    assert honest.per_class_reasons == {} and honest.classes == ("blue", "red")

    swapped = measure_generator(RealImageGenerator(classes, swap={0: 1, 1: 0}), ConditionalInfo(), params, LOG,
                                root).report
    assert swapped.fid < 1e-3   # equal shares: swapping the labels leaves the overall set the same images
    for name in classes:
        assert swapped.per_class[name]["fid"] > 100 * max(honest.per_class[name]["fid"], 1e-3)
        assert swapped.per_class[name]["fid"] > 10 * swapped.fid + 1
        assert swapped.per_class[name]["kid"] > honest.per_class[name]["kid"]


def test_overall_samples_come_in_the_data_proportions(tmp_path):
    classes = {"blue": tinted(20, 1, 2), "red": tinted(60, 2, 0)}
    root = labelled_project(tmp_path, classes)
    generator = RealImageGenerator(classes)
    report = measure_generator(generator, ConditionalInfo(), params_for(80, 0), LOG, root).report

    drawn = torch.cat(generator.seen_labels)
    assert drawn.bincount().tolist() == [20, 60]
    # 20 blue and 60 red samples, each real image once: the data itself, so FID ~0 (equal shares would not be).
    assert report.fid < 1e-3
    assert report.sample_class_counts == {"blue": 20, "red": 60}
    assert "samples labelled in the data's class proportions" in report.sample_labelling
    assert any("samples labelled in the data's class proportions" in row["detail"] for row in report.report_rows())
    assert report.per_class_unavailable_reason == "evaluate.per_class_samples is 0" and report.per_class is None


def test_the_class_labelling_is_fixed_by_the_seed_whatever_the_batch_size():
    assert largest_remainder([414, 899, 369, 318], 1000) == [207, 450, 184, 159]   # 449.5 and 184.5: the earlier
    assert largest_remainder([1, 1, 1], 4) == [2, 1, 1] and largest_remainder([5, 0], 3) == [3, 0]
    first, again = proportional_labels([30, 70], 100, 12345), proportional_labels([30, 70], 100, 12345)
    assert np.array_equal(first, again) and np.bincount(first).tolist() == [30, 70]
    assert not np.array_equal(first, proportional_labels([30, 70], 100, 7))
    assert not np.array_equal(first[:50], np.sort(first[:50]))   # spread out, not in blocks of one class

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.pairs: list[tuple[float, int]] = []

        def forward(self, z, labels):
            self.pairs += list(zip(z[:, 0].tolist(), labels.tolist()))
            return torch.zeros(len(z), 3, RESOLUTION, RESOLUTION)

    class Flat(nn.Module):
        def forward(self, x):
            return (x.float().flatten(1)[:, :4],)

        def convert_features_tuple_to_dict(self, features):
            return {"x": features[0]}

    seen = []
    for batch_size in (3, 16, 100):
        recorder = Recorder()
        model = SeededGenerator(recorder, Z_DIM, RESOLUTION, lambda n: torch.as_tensor(proportional_labels([30, 70], n, 5)))
        generator_features(model, Flat(), 100, batch_size, 5, torch.device("cpu"))
        seen.append(recorder.pairs)
    assert seen[0] == seen[1] == seen[2]   # latent i is drawn as the same class in every batch layout
    assert [label for _, label in seen[0]] == proportional_labels([30, 70], 100, 5).tolist()


def test_a_class_with_too_few_images_says_so_instead_of_a_number(tmp_path):
    classes = {"blue": tinted(40, 1, 2), "night": tinted(12, 2, 0)}
    root = labelled_project(tmp_path, classes)
    params = params_for(52, 40)
    evaluation = measure_generator(RealImageGenerator(classes), ConditionalInfo(classes=("blue", "night")), params,
                                   LOG, root)
    report = evaluation.report
    reason = "night: 12 real images, fewer than evaluate.per_class_min_images (20)"
    assert report.per_class["night"] == {"n_real": 12, "n_samples": 0}
    assert report.per_class_reasons == {"night": reason}
    assert report.per_class["blue"]["fid"] < 1e-3

    rows = {row["class"]: row for row in report.per_class_rows()}
    assert rows["night"]["FID [sampling noise, 95%]"] == f"n/a: {reason}" and rows["night"]["KID"] == "n/a"

    out = write_evaluation(evaluation, params, root / params.base.paths.evaluate).parent
    metrics = json.loads((out / "metrics.json").read_text())
    provenance = json.loads((out / "evaluation.json").read_text())
    assert metrics["per_class"]["night"] == {"n_real": 12, "n_samples": 0}
    assert set(metrics["per_class"]["blue"]) == {"fid", "fid_low", "fid_high", "kid", "kid_std", "n_samples", "n_real"}
    assert provenance["per_class_reasons"] == {"night": reason} and provenance["classes"] == ["blue", "night"]
    assert "class proportions" in provenance["sample_labelling"]
    assert read_evaluation(out) == report.to_json()   # metrics.json and evaluation.json read back as one
    scores = sorted(path.name for path in (out / "scores").iterdir())
    assert "fid-blue.json" in scores and "kid-blue.json" in scores and "fid-night.json" not in scores
    assert json.loads((out / "scores" / "fid-blue.json").read_text())["n"] == 40
    assert set(json.loads((out / "scores" / "fid-blue.json").read_text())) == {"value", "low", "high", "n"}

    # What a user reads: `scenegan summary` (the end of `make demo`) has the per-class table, the reason under it,
    # and `scenegan run evaluate` a line of FID per class.
    summary = pipeline_summary(params, root).splitlines()
    title = summary.index(report.per_class_title())
    assert summary[title + 1].split() == ["class", "real", "images", "samples", "FID", "[sampling", "noise,", "95%]",
                                          "KID"]
    assert summary[title + 4].split()[:4] == ["night", "12", "0", "n/a"] and f"  n/a {reason}" in summary[title:]
    line = stage_lines("evaluate", report.to_json(), params, root)[-1]
    assert line.startswith("  FID per class: blue 0") and "night n/a" in line


def test_an_unconditional_generator_is_scored_as_before_on_labelled_data(tmp_path):
    plain_root, labelled_root = tmp_path / "plain", tmp_path / "labelled"
    images = {"blue": tinted(24, 1, 2), "red": tinted(24, 2, 0)}
    params = params_for(40, 40)
    write_prepared_dataset(plain_root / params.base.paths.prepared, np.concatenate(list(images.values())))
    write_labelled_dataset(labelled_root / params.base.paths.prepared, images)

    before = measure_generator(TinyGenerator(), TinyInfo(), params, LOG, plain_root).report
    after = measure_generator(TinyGenerator(), TinyInfo(), params, LOG, labelled_root).report
    assert after.metrics_json() == before.metrics_json()
    assert not set(after.to_json()) & {"per_class", "classes", "sample_labelling", "per_class_reasons"}
    assert after.per_class_rows() == []


def test_a_conditional_generator_on_unlabelled_data_draws_equal_shares_and_says_why_no_class_scores(tmp_path):
    classes = {"blue": tinted(20, 1, 2), "red": tinted(20, 2, 0)}
    params = params_for(40, 20)
    write_prepared_dataset(tmp_path / params.base.paths.prepared, np.concatenate(list(classes.values())))
    generator = RealImageGenerator(classes)
    report = measure_generator(generator, ConditionalInfo(), params, LOG, tmp_path).report
    assert torch.cat(generator.seen_labels).bincount().tolist() == [20, 20]
    assert "equal shares" in report.sample_labelling and "no labels" in report.sample_labelling
    assert "has no class labels" in report.per_class_unavailable_reason and report.per_class is None
    assert report.per_class_rows()[0]["FID [sampling noise, 95%]"].startswith("n/a: ")


def test_dvc_score_files_for_classes_keep_the_shared_keys():
    files = dvc_score_files({"fid": 10.0, "n_samples": 100, "per_class": {
        "day": {"fid": 12.5, "fid_low": 11.0, "fid_high": 14.0, "kid": 0.01, "kid_std": 0.001, "n_samples": 50,
                "n_real": 300},
        "night": {"n_real": 30, "n_samples": 0}}})
    assert files["fid-day.json"] == {"value": 12.5, "low": 11.0, "high": 14.0, "n": 50}
    assert files["kid-day.json"] == {"value": 0.01, "std": 0.001, "n": 50}
    assert "fid-night.json" not in files and "kid-night.json" not in files


def version(label: str, per_class=None, reasons=None) -> VersionRow:
    return VersionRow(label=label, kind="tag", commit="0" * 40, date="2026-12-01T00:00:00Z", data_md5="ab" * 16,
                      n_images=2000, resolution=64, checkpoint_kimg=48.0, fid=60.0, kid_mean=0.05, kid_std=0.002,
                      is_mean=None, is_std=None, n_samples=1000, extractor="fid-inception-v3-tf2015",
                      drift_fid_from_previous=None, drift_kid_from_previous=None, notes=(), params={},
                      per_class=per_class, per_class_reasons=reasons)


def scored(fid: float) -> dict:
    return {"fid": fid, "fid_low": fid - 2.5, "fid_high": fid + 3.0, "kid": 0.04, "kid_std": 0.003,
            "n_samples": 500, "n_real": 400}


def test_compare_shows_a_fid_column_per_class_across_versions():
    night = "night: 30 real images, fewer than evaluate.per_class_min_images (100)"
    v2 = version("v2", {"dawn": scored(81.25), "day": scored(54.5), "night": {"n_real": 30, "n_samples": 0}},
                 {"night": night})
    v3 = version("v3", {"dawn": scored(80.0), "day": scored(55.0), "night": scored(70.0),
                        "mountain_lake_at_sunrise": scored(90.0)})
    comparison = Comparison((version("v1"), v2, v3), (), ("fid",))

    assert comparison.classes == ("dawn", "day", "night", "mountain_lake_at_sunrise")
    table = comparison.per_class_table_rows()
    assert [row["version"] for row in table] == ["v1", "v2", "v3"]
    assert set(table[0].values()) == {"v1", "-"}                    # scored before classes: every class absent
    assert table[1]["night"] == "n/a" and table[1]["mountain_lake_at_sunrise"] == "-"
    assert table[1]["dawn"] == "81.25 [78.75, 84.25]" and table[2]["night"].startswith("70")
    assert comparison.per_class_footnotes() == [f"n/a in v2: {night}"]

    records = comparison.records()
    assert records[2]["fid/night"] == 70.0 and records[1]["fid/night"] is None and records[0]["fid/dawn"] is None
    assert "fid_low/day" in comparison.columns and "kid/mountain_lake_at_sunrise" in comparison.columns
    assert comparison.per_class_records()[1]["per_class_reasons"] == {"night": night}
    markdown = comparison.to_markdown()
    assert "## FID per class" in markdown and "| v2 | 81.25 [78.75, 84.25] |" in markdown
    assert "n/a in v2: night: 30 real images" in markdown

    result = {"table": comparison.table_rows(), "param_keys": [], "footnotes": [], "files": {},
              "per_class_table": table, "per_class_footnotes": comparison.per_class_footnotes(),
              "per_class": comparison.per_class_records()}
    lines = compare_result(result).lines
    assert all(len(line) <= 120 for line in lines), max(lines, key=len)
    text = "\n".join(lines)
    assert "FID per class" in text and f"n/a in v2: {night}" in text
    for name in comparison.classes:   # every class is shown, in a second table when they do not fit in one
        assert name[:20] in text


def test_compare_has_no_per_class_table_when_no_version_has_classes():
    comparison = Comparison((version("v1"), version("v2")), (), ("fid",))
    assert comparison.classes == () and comparison.per_class_table_rows() == []
    assert "FID per class" not in comparison.to_markdown()
    assert not any("/" in column for column in comparison.columns)
