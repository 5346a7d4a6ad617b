"""`dvc plots show` draws its charts with no network (issue 21, item 1).

DVC's own page loads vega from a CDN and stays blank offline. The project's
.dvc/config points DVC at .dvc/plots/offline.html, whose scripts are the
copies `make vega` installs in .cache/vega. Here a scratch DVC project with
that config, the project's own `plots:` section and a dvclive log written by
the trainer's TrainingLiveLog runs `dvc plots show`, and headless Chromium,
with every request to the network refused, loads the page: vega-embed must
have drawn each chart (a <canvas> inside each plot's div), and the sample
grid of every tick must be on the page.
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
CHARTS = ["training_FID", "training_diversity", "training_losses"]


def project_plots_section() -> str:
    """dvc.yaml's top-level `plots:` section, as the project declares it."""
    text = (REPO_ROOT / "dvc.yaml").read_text()
    return text[text.index("\nplots:\n") + 1:]


def write_live_log(live: Path) -> None:
    """Five ticks through the trainer's dvclive writer: losses and diversity each tick, FID at two, a grid each."""
    from PIL import Image

    from ganlib.logs import plain_logger
    from ganlib.training.live_log import LiveTick, TrainingLiveLog

    ticks = []
    for i in range(1, 6):
        grid = live.parent / f"grid-{i}.png"
        Image.new("RGB", (16, 16), (40 * i, 90, 200 - 30 * i)).save(grid)
        metrics = {"loss_d": 1.4 - i / 10, "loss_g": 0.7 + i / 5, "diversity": 0.5 + i / 20}
        if i % 2 == 0:
            metrics["fid"] = 300.0 - 40 * i
        ticks.append(LiveTick(images_shown=2048 * i, metrics=metrics, grid=grid))
    TrainingLiveLog(live, plain_logger("scenegan-tests")).finish(ticks)


def scratch_plots_project(root: Path) -> None:
    """A git + DVC repo with the project's plots config, template and plots, vega from the repo's .cache."""
    root.mkdir()
    run(["git", "init", "-q"], root)
    run([str(Path(sys.executable).with_name("dvc")), "init", "-q"], root)
    shutil.copy(REPO_ROOT / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copytree(REPO_ROOT / ".dvc" / "plots", root / ".dvc" / "plots")
    (root / ".cache").mkdir()
    (root / ".cache" / "vega").symlink_to(VEGA_DIR)
    (root / "dvc.yaml").write_text(project_plots_section())
    (root / "params.yaml").write_text("base:\n  paths:\n    live: runs/live\n")
    (root / "runs").mkdir()
    write_live_log(root / "runs" / "live")


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
    assert sorted(drawn) == CHARTS, dom[-3000:]
    assert all("<canvas" in piece for piece in drawn.values()), dom[-3000:]
    assert 'class="missing"' not in dom
    shown = re.findall(r'<img src="[^"]*samples[/_](\d+)\.png"', html)
    assert sorted(map(int, shown)) == [2048 * i for i in range(1, 6)], html[-3000:]
