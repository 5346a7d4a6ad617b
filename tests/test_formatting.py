"""Numbers as people read them (ganlib.formatting) and the dataset-version helpers (ganlib.io.provenance)."""

from __future__ import annotations

from functools import partial

import pytest

from ganlib.formatting import (
    fid_noise_band_text,
    fid_noise_description,
    fid_noise_text,
    fixed,
    plus_minus,
    significant,
)
from ganlib.io.provenance import dvc_file_md5, dvc_tracked_md5, short_md5


def test_significant_rounds_floats_and_leaves_counts_and_text_alone():
    assert significant(218.81234, 4) == "218.8" and significant(0.0123456, 4) == "0.01235"
    assert significant(123456.7, 6, scientific_from=1e5) == "1.2346e+05"
    assert significant(99999.4, 6, scientific_from=1e5) == "99999.4"
    assert significant(12345, 4) == "12345"                 # a count, not rounded to 1.234e+04
    assert significant(None, 4) == "n/a" and significant(None, 4, missing="") == ""
    assert significant("fid-inception", 4) == "fid-inception"


def test_fixed_and_plus_minus():
    assert fixed(218.8123, 1) == "218.8" and fixed(2, 3) == "2.000" and fixed(float("nan"), 2) == "nan"
    assert fixed(None, 2) == "n/a" and fixed(True, 2) == "True"
    three = partial(fixed, decimals=3)
    assert plus_minus(0.5, 0.25, three) == "0.500 ± 0.250"
    assert plus_minus(0.5, None, three) == "0.500" and plus_minus(None, 0.1, three, missing="") == ""


def test_the_band_reads_as_sampling_noise_with_its_resamples_and_n():
    show = partial(significant, digits=4)
    assert fid_noise_band_text(214.1, 223.94, show) == "[214.1, 223.9]"
    assert (fid_noise_description(200, 1000)
            == "95% band over 200 bootstrap resamples of the 1000 generated samples; reference fixed")
    assert fid_noise_text(218.8123, 214.1, 223.9, 200, 1000, show) == (
        "FID 218.8, sampling noise [214.1, 223.9] "
        "(95% band over 200 bootstrap resamples of the 1000 generated samples; reference fixed)")
    assert fid_noise_text(218.8123, None, None, None, None, show) == "FID 218.8"


def test_one_reading_of_a_dvc_file_from_disk_or_from_a_revision(tmp_path):
    text = "outs:\n- md5: 3f2a0c1d2e3f40516273849abcdeffff.dir\n  path: raw\n"
    (tmp_path / "data.dvc").write_text(text)
    assert dvc_tracked_md5(tmp_path / "data.dvc") == "3f2a0c1d2e3f40516273849abcdeffff"
    assert dvc_file_md5({"outs": [{"md5": "abc", "path": "x"}]}) == "abc"
    for unusable in (None, {}, {"outs": []}, {"outs": ["raw"]}, {"outs": [{"path": "raw"}]}):
        assert dvc_file_md5(unusable) is None
    assert dvc_tracked_md5(tmp_path / "missing.dvc") is None


@pytest.mark.parametrize("md5, shown", [("0123456789abcdef", "01234567"), (None, "untracked"), ("", "untracked")])
def test_short_md5(md5, shown):
    assert short_md5(md5) == shown


def test_iso_utc_reads_the_same_for_a_datetime_and_epoch_seconds():
    from datetime import datetime, timedelta, timezone

    from ganlib.formatting import iso_utc

    moment = datetime(2026, 12, 2, 16, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(moment) == "2026-12-02T14:04:05Z" == iso_utc(moment.timestamp())
