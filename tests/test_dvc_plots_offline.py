"""`dvc plots show` draws its charts with no network (issue 21, item 1).

DVC's own page loads vega from a CDN and stays blank offline. The project's
.dvc/config points DVC at .dvc/plots/offline.html, whose scripts are the
copies `make vega` installs in .cache/vega. Here a scratch DVC project with
that config and two plots runs `dvc plots show`, and headless Chromium, with
every request to the network refused, loads the page: vega-embed must have
drawn each chart (a <canvas> inside each plot's div).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VEGA_DIR = REPO_ROOT / ".cache" / "vega"
VEGA_FILES = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
PLOTS_YAML = """\
plots:
  - training losses:
      template: linear
      x: kimg
      y:
        curve.csv: [loss_d, loss_g]
  - training FID:
      template: linear
      x: kimg
      y:
        fid_curve.csv: fid
"""


def scratch_plots_project(root: Path) -> None:
    """A git + DVC repo with the project's plots config and template, vega from the repo's .cache, two plots."""
    root.mkdir()
    run(["git", "init", "-q"], root)
    run([str(Path(sys.executable).with_name("dvc")), "init", "-q"], root)
    shutil.copy(REPO_ROOT / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copytree(REPO_ROOT / ".dvc" / "plots", root / ".dvc" / "plots")
    (root / ".cache").mkdir()
    (root / ".cache" / "vega").symlink_to(VEGA_DIR)
    (root / "dvc.yaml").write_text(PLOTS_YAML)
    (root / "curve.csv").write_text("kimg,loss_d,loss_g\n" + "".join(
        f"{k / 4},{1.4 - k / 100},{0.7 + k / 50}\n" for k in range(20)))
    (root / "fid_curve.csv").write_text("kimg,fid\n2,310.5\n4,250.25\n")


def test_dvc_plots_page_draws_its_charts_offline(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not on PATH (`make browser` installs it)")
    missing = [name for name in VEGA_FILES if not (VEGA_DIR / name).is_file()]
    if missing:
        pytest.skip(f"{VEGA_DIR} lacks {', '.join(missing)}: run `make vega` (it needs npm)")
    root = tmp_path / "project"
    scratch_plots_project(root)

    run([str(Path(sys.executable).with_name("dvc")), "plots", "show"], root)
    page = root / "dvc_plots" / "index.html"
    html = page.read_text()
    assert '<script src="../.cache/vega/vega.min.js">' in html
    from dvc_render.vega import VegaRenderer

    cdn_tags = [line.strip() for line in VegaRenderer.SCRIPTS.splitlines() if line.strip()]
    assert cdn_tags and not any(tag in html for tag in cdn_tags), "DVC's own CDN script tags are in the page"

    # The proxy refuses every connection: nothing can come from the network, CDN fallback included.
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--proxy-server=127.0.0.1:9",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60,
    ).stdout
    # vega-embed marks each plot's div as its own and draws a canvas inside it: one piece per plot.
    pieces = re.split(r'<div id="(training_\w+)" class="vega-embed', dom)
    drawn = dict(zip(pieces[1::2], pieces[2::2]))
    assert sorted(drawn) == ["training_FID", "training_losses"], dom[-3000:]
    assert all("<canvas" in piece for piece in drawn.values()), dom[-3000:]
    assert 'class="missing"' not in dom
