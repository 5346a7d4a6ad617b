"""`scenegan generate`: images per seed, their manifest and outputs, latent walks, and which generator is used.

Tiny generators (32 px, a few channels) written as the train stage writes
them; the CLI runs in-process, as a user would call it, with --params
pointing into a scratch project.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from PIL import Image

from flows.cli import main as scenegan_main
from ganlib.generation.sampler import exact_fp32, seed_latents
from ganlib.generation.walk import write_latent_walk, walk_latents
from ganlib.models.generator_file import GeneratorInfo, load_generator, save_generator
from ganlib.models.registry import rebuild_generator

DCGAN = {"z_dim": 16, "width": 4, "resolution": 32}
R3GAN = {"z_dim": 16, "width": 8, "resolution": 32}   # its last bits depend on the batch: seed 1207 alone, unpadded,
                                                        # gives other uint8 pixels than in a batch of 8 (CPU)
DATA_MD5 = "0123456789abcdef0123456789abcdef"


def write_generator(path: Path, arch: str = "dcgan", build: dict = DCGAN, weights_seed: int = 0,
                    poison: bool = False, classes: tuple[str, ...] = ()) -> Path:
    build = {**build, "n_classes": len(classes)} if classes else build
    with torch.random.fork_rng():
        torch.manual_seed(weights_seed)
        generator = rebuild_generator(arch, build)
    if poison:  # a diverged run: every output is NaN
        with torch.no_grad():
            next(generator.parameters()).fill_(float("nan"))
    info = GeneratorInfo(arch, build["z_dim"], build["resolution"], 2.0, DATA_MD5, "e" * 64, "f" * 16, classes)
    return save_generator(path, generator, info, build)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A params.yaml with a trained generator where base.paths.train says, and nothing published."""
    root = tmp_path_factory.mktemp("generate-project")
    shutil.copy2(REPO_ROOT / "params.yaml", root / "params.yaml")
    write_generator(root / "runs" / "train" / "generator.pt")
    return root


def scenegan(project: Path, capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = scenegan_main(["generate", "--params", str(project / "params.yaml"), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def pngs(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.glob("*.png"))}


def test_image_i_of_seed_s_is_the_single_image_of_seed_s_plus_i(tmp_path, project, capsys):
    """Byte for byte, whatever n and the image's place in its batch (r3gan's bits do depend on the batch size)."""
    generator = write_generator(tmp_path / "r3gan.pt", "r3gan", R3GAN)
    runs = {"many": ("1200", "11"), "later": ("1204", "7"), "one": ("1207", "1")}
    for name, (seed, n) in runs.items():
        code, _, err = scenegan(project, capsys, "--generator", str(generator), "--seed", seed, "--n", n,
                                "--batch", "8", "--out", str(tmp_path / name))
        assert code == 0, err
    many, later, one = (pngs(tmp_path / name) for name in runs)
    assert list(many) == [f"seed{seed}.png" for seed in range(1200, 1211)]
    assert later == {name: many[name] for name in later}
    assert one == {"seed1207.png": many["seed1207.png"]}
    assert len(set(many.values())) == len(many)  # distinct images, not one repeated


CLASSES = ("dawn", "day", "dusk")


def test_class_choices_of_a_conditional_generator(tmp_path, project, capsys):
    generator = str(write_generator(tmp_path / "conditional.pt", classes=CLASSES))
    runs = {"default": [], "dusk": ["--class", "dusk"], "all": ["--class", "all"]}
    for name, extra in runs.items():
        code, _, err = scenegan(project, capsys, "--generator", generator, "--seed", "30", "--n", "3", "--batch", "4",
                                "--out", str(tmp_path / name), *extra)
        assert code == 0, err
    default, dusk, every = (pngs(tmp_path / name) for name in runs)
    # No --class: the image of seed s is class s mod 3, so it is the same image as that class asked for by name.
    assert list(default) == ["seed0030-dawn.png", "seed0031-day.png", "seed0032-dusk.png"]
    assert list(dusk) == ["seed0030-dusk.png", "seed0031-dusk.png", "seed0032-dusk.png"]
    assert default["seed0032-dusk.png"] == dusk["seed0032-dusk.png"]
    assert default["seed0030-dawn.png"] != dusk["seed0030-dusk.png"]  # same latent, other class, other image
    assert sorted(every) == sorted(f"seed{s:04d}-{c}.png" for s in (30, 31, 32) for c in CLASSES)
    assert every["seed0031-dusk.png"] == dusk["seed0031-dusk.png"]
    manifest = json.loads((tmp_path / "all" / "manifest.json").read_text())
    assert manifest["generator"]["classes"] == list(CLASSES) and manifest["n"] == 3
    assert {entry["class"] for entry in manifest["images"]} == set(CLASSES) and len(manifest["images"]) == 9
    assert "--class all" in manifest["regenerate"]

    code, _, err = scenegan(project, capsys, "--generator", generator, "--class", "noon", "--out", str(tmp_path / "x"))
    assert code != 0 and "--class noon: the generator has no such class; its classes are dawn, day, dusk" in err
    code, _, err = scenegan(project, capsys, "--class", "dawn", "--out", str(tmp_path / "y"))  # the unconditional one
    assert code != 0 and "--class dawn: this generator is unconditional" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_the_same_seed_gives_the_same_bytes_and_truncation_one_is_none(tmp_path, project, capsys):
    for name, extra in (("a", []), ("b", ["--truncation", "1.0"]), ("psi", ["--truncation", "0.5"])):
        code, _, err = scenegan(project, capsys, "--seed", "7", "--n", "5", "--batch", "4",
                                "--out", str(tmp_path / name), *extra)
        assert code == 0, err
    a, b, psi = pngs(tmp_path / "a"), pngs(tmp_path / "b"), pngs(tmp_path / "psi")
    assert a == b
    assert all(a[name] != psi[name] for name in a)
    manifests = [json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("a", "b")]
    for manifest in manifests:
        manifest.pop("regenerate")  # names its own --out
    assert manifests[0] == manifests[1]


def test_truncation_scales_each_latent_toward_the_mean(tmp_path, project):
    """psi 0.5 is the image of latent z/2: the same scene, not a resampled one."""
    from ganlib.generation.sampler import render

    generator, info = load_generator(project / "runs" / "train" / "generator.pt", torch.device("cpu"))
    z = seed_latents(3, 2, info.z_dim)
    truncated = np.concatenate(list(render(generator, z, 32, 4, torch.device("cpu"), truncation=0.5)))
    halved = np.concatenate(list(render(generator, z * 0.5, 32, 4, torch.device("cpu"))))
    assert np.array_equal(truncated, halved)


def test_the_manifest_records_seeds_files_generator_and_dataset_version(tmp_path, project, capsys):
    out = tmp_path / "images"
    code, stdout, err = scenegan(project, capsys, "--seed", "40", "--n", "3", "--truncation", "0.7", "--out", str(out))
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    trained = project / "runs" / "train" / "generator.pt"
    assert manifest["format"] == "scenegan-generated/1"
    assert [(entry["file"], entry["seed"]) for entry in manifest["images"]] == [
        ("seed0040.png", 40), ("seed0041.png", 41), ("seed0042.png", 42)]
    for entry in manifest["images"]:
        assert entry["sha256"] == hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest()
    assert manifest["generator"]["source"] == "trained"
    assert manifest["generator"]["sha256"] == hashlib.sha256(trained.read_bytes()).hexdigest()
    assert manifest["generator"]["arch"] == "dcgan" and manifest["generator"]["resolution"] == 32
    assert manifest["dataset_version"] == DATA_MD5
    assert (manifest["seed"], manifest["n"], manifest["truncation"]) == (40, 3, 0.7)
    assert (manifest["device"], manifest["precision"], manifest["batch_size"]) == ("cpu", "fp32", 32)
    assert manifest["software"]["scenegan"] and manifest["software"]["torch"]
    assert "--seed 40 --n 3 --truncation 0.7" in manifest["regenerate"]
    assert "trained" in stdout and "seeds 40-42" in stdout
    assert Image.open(out / "seed0040.png").size == (32, 32)


def test_a_zip_holds_the_same_images_and_manifest(tmp_path, project, capsys):
    code, _, err = scenegan(project, capsys, "--seed", "5", "--n", "3", "--out", str(tmp_path / "dir"))
    assert code == 0, err
    code, _, err = scenegan(project, capsys, "--seed", "5", "--n", "3", "--out", str(tmp_path / "set.zip"))
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "set.zip") as archive:
        names = archive.namelist()
        assert names == ["set/seed0005.png", "set/seed0006.png", "set/seed0007.png", "set/manifest.json"]
        assert {name.split("/")[1]: archive.read(name) for name in names[:3]} == pngs(tmp_path / "dir")
        assert json.loads(archive.read("set/manifest.json"))["images"][2]["seed"] == 7
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dir", "set.zip"]  # no temporaries left


def test_a_non_empty_out_is_refused_unless_overwrite(tmp_path, project, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"someone's photo")
    code, _, err = scenegan(project, capsys, "--n", "2", "--out", str(out))
    assert code == 2 and "--out" in err and "--overwrite" in err
    assert [path.name for path in out.iterdir()] == ["holiday.jpg"]
    (tmp_path / "old.zip").write_bytes(b"old")
    code, _, err = scenegan(project, capsys, "--n", "2", "--out", str(tmp_path / "old.zip"))
    assert code == 2 and "already exists" in err and (tmp_path / "old.zip").read_bytes() == b"old"
    code, _, err = scenegan(project, capsys, "--n", "2", "--out", str(out), "--overwrite")
    assert code == 0, err
    assert sorted(path.name for path in out.iterdir()) == ["manifest.json", "seed0000.png", "seed0001.png"]


@pytest.mark.parametrize("out_name", ["images", "images.zip"])
def test_a_failed_run_leaves_nothing_behind(tmp_path, project, capsys, out_name):
    generator = write_generator(tmp_path / "diverged.pt", poison=True)
    code, _, err = scenegan(project, capsys, "--generator", str(generator), "--n", "3", "--out",
                            str(tmp_path / "out" / out_name))
    assert code == 2 and "NaN" in err
    assert list((tmp_path / "out").iterdir()) == []


def test_bad_input_is_one_message_naming_the_flag_or_path(tmp_path, project, capsys):
    code, stdout, err = scenegan(project, capsys, "--truncation", "1.5", "--out", str(tmp_path / "a"), "--json")
    assert code == 2 and "--truncation" in err and json.loads(stdout)["ok"] is False
    missing = tmp_path / "nowhere" / "generator.pt"
    code, _, err = scenegan(project, capsys, "--generator", str(missing), "--out", str(tmp_path / "b"))
    assert code == 2 and f"--generator {missing}" in err and "Traceback" not in err
    code, _, err = scenegan(project, capsys, "--seed", str(2**32 - 2), "--n", "3", "--out", str(tmp_path / "c"))
    assert code == 2 and "--seed" in err
    code, _, err = scenegan(project, capsys, "--n", "3", "--out", str(tmp_path / "walk.mp4"))
    assert code == 2 and "--walk" in err
    assert not any(tmp_path.iterdir())


def test_json_output_is_one_document_with_the_manifest(tmp_path, project, capsys):
    code, stdout, err = scenegan(project, capsys, "--seed", "9", "--n", "2", "--out", str(tmp_path / "j"), "--json")
    assert code == 0, err
    document = json.loads(stdout)
    assert document["ok"] is True and document["command"] == "generate"
    assert document["images"]["files"] == ["seed0009.png", "seed0010.png", "manifest.json"]
    assert document["generator"]["kind"] == "trained"
    assert document["manifest"]["images"][1]["seed"] == 10


def test_the_published_release_is_the_default_generator(tmp_path, capsys):
    """And the result says so, and that the trained generator differs from it."""
    from ganlib.config import load_params
    from ganlib.logs import plain_logger
    from ganlib.publish.stage import publish_generator

    root = tmp_path / "project"
    root.mkdir()
    shutil.copy2(REPO_ROOT / "params.yaml", root / "params.yaml")
    published_file = write_generator(tmp_path / "published.pt", weights_seed=1)
    write_generator(root / "runs" / "train" / "generator.pt", weights_seed=2)
    params = load_params(root / "params.yaml", ["publish.grid_size=1", "publish.n_samples=1",
                                                 "publish.interpolation_rows=1", "publish.interpolation_steps=2"])
    generator, info = load_generator(published_file, torch.device("cpu"))
    report = publish_generator(generator, info, params, plain_logger(), root, now=datetime.now(timezone.utc),
                               generator_file=published_file.read_bytes())

    code, stdout, err = scenegan(root, capsys, "--n", "2", "--out", str(tmp_path / "from-release"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "from-release" / "manifest.json").read_text())
    assert manifest["generator"]["source"] == "published"
    assert manifest["generator"]["release"] == report.release
    assert manifest["generator"]["sha256"] == hashlib.sha256(published_file.read_bytes()).hexdigest()
    assert f"releases/{report.release}/generator.pt, the published release" in stdout
    assert "--generator" in stdout and "not the published one" in stdout
    code, _, err = scenegan(root, capsys, "--n", "2", "--generator", str(published_file),
                            "--out", str(tmp_path / "given"))
    assert code == 0, err
    assert pngs(tmp_path / "given") == pngs(tmp_path / "from-release")


# --------------------------------------------------------------------------- latent walks


def test_a_walk_loops_through_its_keyframes():
    """Frame k*F is keyframe k (seed S+k) exactly; the last leg runs from the last keyframe toward frame 0,
    which is where one more step lands; and that step back to the start is no jump."""
    from ganlib.generation.walk import slerp

    keyframes, per_leg = 3, 6
    frames = walk_latents(16, 100, keyframes, per_leg)
    assert frames.shape == (keyframes * per_leg, 16)
    keys = seed_latents(100, keyframes, 16)
    for k in range(keyframes):
        assert torch.equal(frames[k * per_leg], keys[k])
    last, first = keys[-1:], keys[:1]
    assert torch.allclose(frames[-1:], slerp(last, first, torch.tensor([(per_leg - 1) / per_leg])).float())
    assert torch.allclose(slerp(last, first, torch.tensor([1.0])).float(), frames[:1], atol=1e-6)

    def angle(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.acos(torch.nn.functional.cosine_similarity(a, b, dim=0).clamp(-1, 1)))

    steps = [angle(frames[i], frames[i + 1]) for i in range(len(frames) - 1)]
    assert angle(frames[-1], frames[0]) <= max(steps)


def test_generate_walk_writes_the_same_mp4_with_the_requested_frames(tmp_path, project, capsys):
    import imageio_ffmpeg

    code, stdout, err = scenegan(project, capsys, "--walk", "3", "--frames-per-keyframe", "4", "--fps", "12",
                                 "--out", str(tmp_path / "walk.mp4"))
    assert code == 0, err
    assert "MP4" in stdout and "12 frames" in stdout
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "walk.mp4"))
    meta = next(reader)
    assert sum(1 for _ in reader) == 12
    assert meta["size"] == (256, 256) and meta["fps"] == 12
    code, _, err = scenegan(project, capsys, "--walk", "3", "--frames-per-keyframe", "4", "--fps", "12",
                            "--out", str(tmp_path / "again.mp4"))
    assert code == 0, err
    assert (tmp_path / "again.mp4").read_bytes() == (tmp_path / "walk.mp4").read_bytes()  # no timestamps in it


def test_a_webp_walk_starts_on_the_image_of_its_first_seed(tmp_path, project, capsys):
    """Lossless WebP: frame 0 is `generate --seed S --n 1`'s image, upscaled; the file has K * F frames and loops."""
    code, _, err = scenegan(project, capsys, "--walk", "2", "--frames-per-keyframe", "3", "--seed", "21",
                            "--out", str(tmp_path / "walk.webp"))
    assert code == 0, err
    code, _, err = scenegan(project, capsys, "--seed", "21", "--n", "1", "--out", str(tmp_path / "still"))
    assert code == 0, err
    with Image.open(tmp_path / "walk.webp") as video:
        assert video.n_frames == 6 and video.info.get("loop") == 0
        first = np.asarray(video.convert("RGB"))
    still = np.asarray(Image.open(tmp_path / "still" / "seed0021.png").convert("RGB"))
    assert np.array_equal(first, still.repeat(8, axis=0).repeat(8, axis=1))


def test_without_ffmpeg_the_walk_falls_back_to_webp_and_says_why(tmp_path, project, monkeypatch):
    import ganlib.generation.video as video

    def no_ffmpeg(frames, fps):
        raise RuntimeError("no ffmpeg executable here")

    monkeypatch.setattr(video, "_mp4_bytes", no_ffmpeg)
    generator, info = load_generator(project / "runs" / "train" / "generator.pt", torch.device("cpu"))
    walk = write_latent_walk(generator, z_dim=info.z_dim, seed=0, path=tmp_path / "walk.mp4", keyframes=2,
                             frames_per_keyframe=2, scale=1)
    assert walk.path == tmp_path / "walk.webp" and walk.format == "webp"
    assert "no ffmpeg executable here" in walk.reason and "WebP" in walk.reason
    assert [path.name for path in tmp_path.iterdir()] == ["walk.webp"]
    with Image.open(walk.path) as written:
        assert written.n_frames == 4 and written.size == (32, 32)


def test_exact_fp32_turns_tf32_off_on_cuda_and_restores_it():
    """Checked without a GPU: the flags are process settings, the device only selects the branch."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with exact_fp32(torch.device("cuda")):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_slerp_hits_the_endpoints_and_keeps_gaussian_norms():
    from ganlib.generation.walk import slerp

    rng = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 256, generator=rng), torch.randn(4, 256, generator=rng)
    assert torch.allclose(slerp(a, b, torch.zeros(4)).float(), a, atol=1e-5)
    assert torch.allclose(slerp(a, b, torch.ones(4)).float(), b, atol=1e-5)
    middle = slerp(a, b, torch.full((4,), 0.5)).float()
    lerp_middle = (a + b) / 2
    # Linear interpolation of near-orthogonal Gaussians shrinks the norm by ~1/sqrt(2); slerp does not.
    assert (middle.norm(dim=1) / a.norm(dim=1)).min() > 0.9
    assert (lerp_middle.norm(dim=1) / a.norm(dim=1)).max() < 0.8
    # Parallel endpoints (angle 0) fall back to a finite linear interpolation.
    assert torch.allclose(slerp(a, 2 * a, torch.full((4,), 0.5)).float(), 1.5 * a, atol=1e-4)
