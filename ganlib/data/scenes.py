"""The embedded default dataset: procedurally generated natural scenes.

For people without photos of their own, `write_default_dataset` writes PNG
landscapes: a sky with sun or moon, clouds or stars; layered mountain ridges
that pale with distance; a lake or the sea reflecting them, or a meadow; forest
edges and tall foreground trees; in varied time of day, season and weather.
Each lands in the folder of its time of day (`dawn/`, `day/`, `dusk/`,
`night/`): the class a person tells at a glance, so that preprocessing
(preprocess.labels) gives the dataset four classes, as a user's own photos in
class folders would.

Each image depends only on (seed, index, size): its random numbers come from
`np.random.default_rng([seed, index])`, so images can be generated in any
order, in part or in parallel and still come out identical. Every draw that
shapes the scene is made before any draw whose count depends on the size, so
one (seed, index) is the same scene at 64 and at 256 px.

The PNG bytes, and with them the DVC md5 of the dataset (`data.dvc`), must
not change from one machine to the next: pixels are made from arithmetic,
sqrt and Pillow resampling only (no exp, sin or pow on arrays, whose
vectorised versions differ between CPUs), and PNGs are written with fixed
settings and no metadata. They do depend on the numpy and Pillow versions
(Pillow brings its own zlib), and on this file: any change to the drawing
code changes the dataset, so `dvc add data/raw` and commit data.dvc after it.
"""

from __future__ import annotations

import bisect
import functools
import io
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ganlib.errors import UserFacingError
from ganlib.io.atomic import staged_directory
from ganlib.logs import Logger
from ganlib.progress import Progress

TIMES_OF_DAY = ("dawn", "day", "dusk", "night")
SEASONS = ("summer", "autumn", "winter")
WEATHERS = ("clear", "overcast", "fog", "haze")
WATERS = ("none", "lake", "sea")
FORESTS = ("none", "conifer", "deciduous")

SUPERSAMPLE = 2          # render at 2x and downsample: antialiased edges
FILE_PATTERN = "scene-{:06d}.png"   # inside the folder of its class: <time of day>/scene-NNNNNN.png
PNG_COMPRESS_LEVEL = 1   # fixed, so that the bytes (and DVC's md5) are stable; higher saves ~4% for 2x the time
MIN_SIZE = 16

# Colours are RGB in 0..1. Per time of day: sky at the zenith, sky at the
# horizon, the sun (or moon) and its glow, and the light that falls on the land.
_SKY_PALETTES = {
    "dawn": ((0.30, 0.36, 0.62), (0.98, 0.72, 0.58), (1.00, 0.80, 0.55), (0.85, 0.70, 0.62)),
    "day": ((0.18, 0.40, 0.78), (0.66, 0.79, 0.92), (1.00, 0.96, 0.85), (1.00, 0.98, 0.93)),
    "dusk": ((0.13, 0.15, 0.38), (1.00, 0.52, 0.25), (1.00, 0.58, 0.25), (0.70, 0.48, 0.36)),
    "night": ((0.015, 0.025, 0.065), (0.09, 0.12, 0.22), (0.90, 0.92, 1.00), (0.26, 0.31, 0.48)),
}
# Lit and shaded side of clouds per time of day.
_CLOUD_PALETTES = {
    "dawn": ((1.00, 0.80, 0.72), (0.52, 0.45, 0.55)),
    "day": ((0.97, 0.97, 0.98), (0.62, 0.66, 0.74)),
    "dusk": ((1.00, 0.60, 0.40), (0.34, 0.26, 0.36)),
    "night": ((0.16, 0.18, 0.24), (0.05, 0.06, 0.09)),
}
# Two colours per season that noise mixes into patches: (near ridges and
# forest-covered hills, bare rock of far mountains, meadow ground).
_LAND_PALETTES = {
    "summer": {
        "hill": ((0.13, 0.25, 0.10), (0.24, 0.34, 0.14)),
        "rock": ((0.30, 0.31, 0.32), (0.22, 0.27, 0.20)),
        "ground": ((0.30, 0.46, 0.14), (0.44, 0.52, 0.20)),
        "trees": ((0.07, 0.16, 0.07), (0.14, 0.26, 0.10)),
    },
    "autumn": {
        "hill": ((0.45, 0.26, 0.10), (0.26, 0.26, 0.12)),
        "rock": ((0.36, 0.31, 0.28), (0.30, 0.24, 0.18)),
        "ground": ((0.55, 0.43, 0.19), (0.42, 0.33, 0.16)),
        "trees": ((0.55, 0.24, 0.06), (0.62, 0.46, 0.10)),
    },
    "winter": {
        "hill": ((0.82, 0.85, 0.90), (0.18, 0.21, 0.20)),
        "rock": ((0.86, 0.88, 0.93), (0.34, 0.35, 0.38)),
        "ground": ((0.90, 0.92, 0.96), (0.74, 0.79, 0.88)),
        "trees": ((0.08, 0.13, 0.09), (0.30, 0.34, 0.34)),
    },
}
_WATER_COLOURS = {"lake": (0.06, 0.14, 0.16), "sea": (0.04, 0.14, 0.26)}
_SNOW = np.float32([0.93, 0.95, 0.99]).reshape(3, 1, 1)


@dataclass(frozen=True)
class SceneAttributes:
    """What one scene shows, in words a person would use."""

    time_of_day: str    # dawn | day | dusk | night
    season: str         # summer | autumn | winter
    weather: str        # clear | overcast | fog | haze
    water: str          # none (a meadow) | lake | sea
    ridges: int         # mountain ridges between sky and water/ground, far to near
    forest: str         # none | conifer | deciduous: a treeline along the horizon
    sky_disc: str       # sun | moon | none: a disc visible in the sky
    cloud_cover: float  # 0 clear .. 1 fully overcast
    horizon: float      # height of the water line / foot of the ridges, as a fraction from the top
    foreground: str     # none | shore | trees

    @property
    def elements(self) -> tuple[str, ...]:
        found = ["sky"]
        if self.sky_disc != "none":
            found.append(self.sky_disc)
        if self.cloud_cover > 0.15:
            found.append("clouds")
        if self.time_of_day == "night" and self.cloud_cover < 0.6 and self.weather != "fog":
            found.append("stars")
        if self.ridges:
            found.append("mountains")
        if self.forest != "none":
            found.append("forest")
        found.append(self.water if self.water != "none" else ("snow" if self.season == "winter" else "meadow"))
        if self.foreground != "none":
            found.append(self.foreground)
        return tuple(found)


@dataclass(frozen=True)
class DefaultDatasetSummary:
    out_dir: Path
    n_images: int
    size: int
    seed: int
    seconds: float
    class_counts: dict[str, int] = field(default_factory=dict)  # scenes per time of day (class folder)

    @property
    def images_per_second(self) -> float:
        return self.n_images / max(self.seconds, 1e-9)

    def __str__(self) -> str:
        classes = ", ".join(f"{name} {count}" for name, count in self.class_counts.items())
        return (
            f"wrote {self.n_images} scenes of {self.size}x{self.size} px (seed {self.seed}) to {self.out_dir} "
            f"in {self.seconds:.1f} s ({self.images_per_second:.0f} images/s); classes by time of day: {classes}"
        )


class DefaultDatasetError(UserFacingError, RuntimeError):
    """The default dataset cannot be written where asked; the message says what to do."""


# --------------------------------------------------------------------------- public


def scene_rng(seed: int, index: int) -> np.random.Generator:
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed} index={index}")
    return np.random.default_rng([seed, index])


def scene_attributes(seed: int, index: int) -> SceneAttributes:
    """The scene that `render_scene(seed, index, size)` draws, at any size."""
    return _sample_attributes(scene_rng(seed, index))


def render_scene(seed: int, index: int, size: int) -> Image.Image:
    """Scene number `index` of the dataset `seed`, as a size x size RGB image."""
    return _scene_and_image(seed, index, size)[1]


def _scene_and_image(seed: int, index: int, size: int) -> tuple[SceneAttributes, Image.Image]:
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE} px, got {size}")
    rng = scene_rng(seed, index)
    scene = _sample_attributes(rng)
    return scene, _render(scene, rng, size)


def scene_png_bytes(image: Image.Image) -> bytes:
    """PNG bytes that depend only on the pixels (no timestamps, no metadata)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buffer.getvalue()


def write_default_dataset(
    out_dir: Path,
    n_images: int,
    size: int,
    seed: int,
    log: Logger,
    overwrite: bool = False,
) -> DefaultDatasetSummary:
    """Write <time of day>/scene-000000.png ... into `out_dir`, all at once or not at all.

    A non-empty `out_dir` is replaced only if it holds nothing but what this
    function writes (time-of-day folders of scene-NNNNNN.png files, or such
    files at the top, as it wrote them before the classes) or if `overwrite`
    is True: data/raw may hold someone's own photos. No marker file is
    written, as it would become part of the dataset.
    """
    out_dir = Path(out_dir)
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE} px, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    _check_replaceable(out_dir, overwrite)

    log.info("writing %d default scenes of %dx%d px (seed %d) to %s", n_images, size, size, seed, out_dir)
    started = time.perf_counter()
    counts: Counter[str] = Counter()
    with staged_directory(out_dir) as staging, Progress(log, n_images, "default dataset", "scenes") as progress:
        for index in range(n_images):
            scene, image = _scene_and_image(seed, index, size)
            folder = staging / scene.time_of_day
            folder.mkdir(exist_ok=True)
            (folder / FILE_PATTERN.format(index)).write_bytes(scene_png_bytes(image))
            counts[scene.time_of_day] += 1
            progress.advance()
    seconds = time.perf_counter() - started
    summary = DefaultDatasetSummary(
        out_dir=out_dir, n_images=n_images, size=size, seed=seed, seconds=seconds,
        class_counts={name: counts[name] for name in TIMES_OF_DAY if counts[name]},
    )
    log.info("%s", summary)
    return summary


def _check_replaceable(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DefaultDatasetError(f"{out_dir}: exists and is not a directory; choose another output path")
    if overwrite or not out_dir.is_dir():
        return
    foreign = sorted(p.name for p in out_dir.iterdir() if not (_is_scene_file(p) or _is_class_folder(p)))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise DefaultDatasetError(
            f"{out_dir}: not empty and not written by the default-dataset generator ({len(foreign)} other "
            f"entries: {shown}); nothing was changed. Choose another output directory, or pass overwrite=True "
            "(CLI: --overwrite) to replace it and everything in it"
        )


def _is_scene_file(path: Path) -> bool:
    name = path.name
    return path.is_file() and name.startswith("scene-") and name.endswith(".png") and name[6:-4].isdigit()


def _is_class_folder(path: Path) -> bool:
    """A time-of-day folder holding only scene files: what write_default_dataset makes."""
    return (path.name in TIMES_OF_DAY and path.is_dir() and not path.is_symlink()
            and all(_is_scene_file(entry) for entry in path.iterdir()))


# --------------------------------------------------------------------------- what the scene shows


def _sample_attributes(rng: np.random.Generator) -> SceneAttributes:
    time_of_day = _choice(rng, TIMES_OF_DAY, (0.2, 0.45, 0.2, 0.15))
    season = _choice(rng, SEASONS, (0.45, 0.3, 0.25))
    weather = _choice(rng, WEATHERS, (0.45, 0.25, 0.13, 0.17))
    water = _choice(rng, WATERS, (0.35, 0.45, 0.2))
    if water == "sea":
        ridges = int(rng.integers(0, 2))
        forest = _choice(rng, FORESTS, (0.8, 0.2, 0.0))
        horizon = rng.uniform(0.45, 0.62)
    else:
        ridges = int(_choice(rng, (1, 2, 3, 4), (0.15, 0.35, 0.3, 0.2)))
        forest = _choice(rng, FORESTS, (0.3, 0.45, 0.25))
        horizon = rng.uniform(0.52, 0.72)
    if season == "winter" and forest == "deciduous":
        forest = "conifer"  # bare winter trees would read as noise at 64 px

    if weather == "overcast":
        cloud_cover = rng.uniform(0.85, 1.0)
    elif weather == "fog":
        cloud_cover = rng.uniform(0.4, 0.8)
    elif weather == "haze":
        cloud_cover = rng.uniform(0.0, 0.5)
    else:
        cloud_cover = rng.uniform(0.0, 0.6)

    if weather in ("overcast", "fog"):
        sky_disc = "none"
    elif time_of_day == "night":
        sky_disc = "moon" if rng.random() < 0.7 else "none"
    else:
        sky_disc = "sun" if rng.random() < 0.8 else "none"

    if water == "none":
        foreground = "trees" if forest != "none" and rng.random() < 0.4 else "none"
    else:
        foreground = _choice(rng, ("none", "shore", "trees"), (0.5, 0.35, 0.15))
    return SceneAttributes(
        time_of_day=time_of_day,
        season=season,
        weather=weather,
        water=water,
        ridges=ridges,
        forest=forest,
        sky_disc=sky_disc,
        cloud_cover=round(float(cloud_cover), 3),
        horizon=round(float(horizon), 3),
        foreground=foreground,
    )


def _choice(rng: np.random.Generator, options: tuple, weights: tuple[float, ...]):
    return options[bisect.bisect_right(list(itertools.accumulate(weights)), rng.random() * sum(weights))]


# --------------------------------------------------------------------------- rendering
#
# Arrays are channel-first: an RGB layer is float32 [3, rows, columns] and a
# colour is [3, 1, 1], so that a scalar field [rows, columns] times a colour
# broadcasts over long rows (channel-last would make numpy loop over 3-long
# pixels, several times slower).


@dataclass(frozen=True)
class _Light:
    """Colours ([3, 1, 1]) and light directions shared by every layer of one scene."""

    zenith: np.ndarray
    horizon: np.ndarray
    sun: np.ndarray          # colour of the sun or moon and of its glow
    land: np.ndarray         # light falling on the land (multiplies its colours)
    cloud_lit: np.ndarray
    cloud_shade: np.ndarray
    sun_x: float             # where the glow comes from, in image fractions (may be off-frame)
    sun_y: float
    glow: float              # strength of the glow around the sun
    fog_density: float       # how fast distant things fade into the horizon colour

    @property
    def from_right(self) -> float:
        """+1 when the light comes from the right, -1 from the left (which slopes are lit)."""
        return 1.0 if self.sun_x > 0.5 else -1.0


@dataclass(frozen=True)
class _Canvas:
    """The image being painted at SUPERSAMPLE x the output size, and its coordinates.

    Only edges need the fine size: the outline of a ridge, a shore or a tree
    (`cover`) is computed there. Colours, shading, textures, sky and water are
    computed at the output size and repeated: a quarter of the cost, and the
    same picture after the LANCZOS downsampling.
    """

    rgb: np.ndarray          # float32 [3, R, R], 0..1, R = SUPERSAMPLE * size
    ys: np.ndarray           # float32 [R, 1], pixel centre rows as fractions from the top
    xs: np.ndarray           # float32 [R], pixel centre columns as fractions from the left
    coarse_ys: np.ndarray    # the same at the output size
    coarse_xs: np.ndarray
    horizon_row: int         # first fine row below the horizon
    terrain: np.ndarray      # float32 [size, size], fractal noise (mean 0, std 1) for land textures
    streaks: np.ndarray      # float32 [size, size], the same noise stretched vertically (gullies)
    cloud_grid: np.ndarray   # noise lattices (fixed size) for the cloud plane and the ground/water plane
    plane_grid: np.ndarray

    @property
    def side(self) -> int:
        return self.rgb.shape[1]

    def coarse_rows(self, row0: int, row1: int) -> slice:
        """The output-size rows that cover fine rows row0..row1."""
        return slice(row0 // SUPERSAMPLE, -(-row1 // SUPERSAMPLE))

    def to_fine(self, row0: int, row1: int, layer: np.ndarray) -> np.ndarray:
        """`layer` [..., rows, size], computed on `coarse_rows(row0, row1)`, repeated onto fine rows row0..row1."""
        skip = row0 % SUPERSAMPLE
        return _upsample(layer)[..., skip : skip + row1 - row0, :]

    def paint(self, row0: int, row1: int, colour: np.ndarray, cover: np.ndarray | None = None) -> None:
        """Paint fine rows row0..row1 with a coarse `colour` layer, where `cover` (fine, 0..1) says."""
        fine = self.to_fine(row0, row1, colour)
        if cover is None:
            self.rgb[:, row0:row1] = fine
        else:
            region = self.rgb[:, row0:row1]
            region += (fine - region) * cover


def _render(scene: SceneAttributes, rng: np.random.Generator, size: int) -> Image.Image:
    light = _sample_light(scene, rng)
    canvas = _new_canvas(scene, rng, size)
    horizon_sky = _paint_sky(canvas, scene, light, rng)
    for layer in range(scene.ridges):
        _paint_ridge(canvas, scene, light, rng, horizon_sky, layer)
    if scene.forest != "none":
        _paint_treeline(canvas, scene, light, rng, horizon_sky)
    if scene.water == "none":
        _paint_ground(canvas, scene, light, rng, horizon_sky)
    else:
        _paint_water(canvas, scene, light, rng, horizon_sky)
    if scene.foreground == "shore":
        _paint_shore(canvas, scene, light, rng)
    elif scene.foreground == "trees":
        _paint_foreground_trees(canvas, light, rng)
    vignette = _vignette(canvas.side, rng.uniform(0.15, 0.45))

    pixels = (_clamp(canvas.rgb * vignette, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)))
    image = image.resize((size, size), Image.Resampling.LANCZOS)
    # Size-dependent draws (grain) come last, so that all of the above is the same scene at any size.
    return _add_grain(image, rng)


def _new_canvas(scene: SceneAttributes, rng: np.random.Generator, size: int) -> _Canvas:
    side = SUPERSAMPLE * size
    fine = ((np.arange(side) + 0.5) / side).astype(np.float32)
    coarse = ((np.arange(size) + 0.5) / size).astype(np.float32)
    # One noise field (4 x 14 cells of 16 x 16 lattice steps) cut into three
    # parts: land textures, the cloud plane, the ground or water plane.
    noise = _noise_field(rng, (4, 14), octaves=5)
    # Large images magnify the lattice until its cells show: refine it first
    # (smoothly, without new random draws, so the scene stays the same).
    refinements = min(2, max(0, (size // 64).bit_length() - 1))
    for _ in range(refinements):
        noise = _subdivide(noise)
    step = 16 << refinements                                                          # lattice steps per cell
    land = noise[:, : 4 * step + 1]                                                   # 4 x 4 cells
    cloud_grid = noise[:, 4 * step : 10 * step + 1]                                   # 4 x 6 cells
    plane_grid = noise[:, 10 * step :]                                                # 4 x 4 cells
    last = 4 * step
    terrain = _sample_grid(land, coarse[:, None] * last, coarse * last)
    # The same noise read 2.5x stretched vertically, from the opposite corner.
    streaks = _sample_grid(land, (1 - 0.4 * coarse[:, None]) * last, (1 - coarse) * last)
    return _Canvas(
        rgb=np.empty((3, side, side), np.float32),
        ys=fine[:, None],
        xs=fine,
        coarse_ys=coarse[:, None],
        coarse_xs=coarse,
        horizon_row=int(round(scene.horizon * side)),
        terrain=terrain,
        streaks=streaks,
        cloud_grid=cloud_grid,
        plane_grid=plane_grid,
    )


def _sample_light(scene: SceneAttributes, rng: np.random.Generator) -> _Light:
    zenith, horizon, sun, land = (_jitter(rng, colour, 0.06) for colour in _SKY_PALETTES[scene.time_of_day])
    cloud_lit, cloud_shade = (_jitter(rng, colour, 0.05) for colour in _CLOUD_PALETTES[scene.time_of_day])
    brightness = _luminance(horizon)

    if scene.time_of_day in ("dawn", "dusk"):
        sun_y = scene.horizon - rng.uniform(0.03, 0.18)
        glow = rng.uniform(0.6, 1.0)
    elif scene.time_of_day == "day":
        sun_y = rng.uniform(0.06, scene.horizon - 0.2)
        glow = rng.uniform(0.25, 0.5)
    else:
        sun_y = rng.uniform(0.08, 0.35)
        glow = rng.uniform(0.2, 0.4)
    sun_x = rng.uniform(0.1, 0.9)
    if scene.sky_disc == "none":
        # The light source is just out of frame: the glow still says where it is.
        sun_x = sun_x - 0.55 if sun_x < 0.5 else sun_x + 0.55

    fog_density = rng.uniform(0.5, 1.0)
    if scene.weather == "overcast":
        # Cloud cover scatters what light there is: even at night it is a little lighter than the land.
        grey = np.array([0.60, 0.62, 0.66], np.float32) * max(brightness, 0.2) / 0.62 * rng.uniform(0.8, 1.1)
        zenith = _mix(zenith, grey * 0.8, 0.8)
        horizon = _mix(horizon, grey, 0.75)
        land = _mix(land, np.full(3, _luminance(land), np.float32) * 0.75, 0.6)
        cloud_lit, cloud_shade = _mix(cloud_lit, grey * 1.1, 0.7), _mix(cloud_shade, grey * 0.7, 0.7)
        glow *= 0.2
        fog_density = rng.uniform(0.8, 1.4)
    elif scene.weather == "fog":
        grey = np.array([0.80, 0.81, 0.82], np.float32) * max(brightness, 0.3) / 0.75
        horizon = _mix(horizon, grey, 0.7)
        zenith = _mix(zenith, horizon, 0.75)
        land = land * 0.85
        cloud_lit, cloud_shade = _mix(cloud_lit, horizon, 0.8), _mix(cloud_shade, horizon, 0.6)
        glow *= 0.3
        fog_density = rng.uniform(3.0, 6.0)
    elif scene.weather == "haze":
        horizon = _mix(horizon, np.array([0.92, 0.88, 0.82], np.float32) * brightness / 0.8, 0.45)
        zenith = _mix(zenith, horizon, 0.35)
        fog_density = rng.uniform(1.6, 2.8)
    return _Light(
        zenith=_rgb(zenith), horizon=_rgb(horizon), sun=_rgb(sun), land=_rgb(land),
        cloud_lit=_rgb(cloud_lit), cloud_shade=_rgb(cloud_shade),
        sun_x=float(sun_x), sun_y=float(sun_y), glow=float(glow), fog_density=float(fog_density),
    )


# --------------------------------------------------------------------------- sky


def _paint_sky(canvas: _Canvas, scene: SceneAttributes, light: _Light, rng: np.random.Generator) -> np.ndarray:
    """Gradient, glow, stars, sun or moon and clouds, computed at the output size (all soft).

    Returns the clear sky along the horizon [3, 1, size]: the colour of the air
    that distant land fades into (without clouds or stars, which would streak it).
    """
    rows = canvas.coarse_rows(0, canvas.horizon_row)
    ys, xs = canvas.coarse_ys[rows], canvas.coarse_xs
    # 0 at the top, 1 at the horizon; bending keeps the zenith colour high up.
    t = _clamp(ys * np.float32(1.0 / scene.horizon), 0.0, 1.0)
    bend = np.float32(rng.uniform(0.2, 0.9))
    t = t * (1 - bend) + t * t * bend
    dx, dy = xs - np.float32(light.sun_x), ys - np.float32(light.sun_y)
    halo = 1.0 / (1.0 + (dx * dx + dy * dy) * np.float32(1.0 / 0.012))            # [rows, size]
    band = (t * t) / (1.0 + dx * dx * np.float32(1.0 / 0.18))                       # glow along the horizon
    glow = (halo * np.float32(0.55) + band * np.float32(0.4)) * np.float32(light.glow)
    sky = light.zenith + (light.horizon - light.zenith) * t + glow * light.sun         # [3, rows, size]
    horizon_sky = sky[:, -1:].copy()

    stars = rng.random((90, 3), dtype=np.float32)   # drawn for every scene so that later draws stay aligned
    if scene.time_of_day == "night" and scene.weather != "fog":
        _paint_stars(sky, stars, scene)
    disc_radius = rng.uniform(0.025, 0.04) if scene.sky_disc == "sun" else rng.uniform(0.018, 0.028)
    if scene.sky_disc != "none":
        _paint_disc(sky, xs, ys, scene, light, disc_radius)
    if scene.cloud_cover > 0.05:
        _paint_clouds(sky, xs, ys, scene, light, canvas.cloud_grid, halo)
    canvas.paint(0, canvas.horizon_row, sky)
    return horizon_sky


def _paint_stars(sky: np.ndarray, stars: np.ndarray, scene: SceneAttributes) -> None:
    rows, size = sky.shape[1:]
    row = (stars[:, 1] * stars[:, 1] * scene.horizon * size).astype(np.int64)   # denser high up
    col = (stars[:, 0] * size).astype(np.int64)
    brightness = np.float32([[0.9], [0.92], [1.0]]) * (0.3 + 0.7 * stars[:, 2] * stars[:, 2])   # [3, stars]
    # About one pixel up to 128 px; larger images get larger stars.
    radius = max(1, size // 128)
    for dr in range(radius):
        for dc in range(radius):
            r, c = np.minimum(row + dr, rows - 1), np.minimum(col + dc, size - 1)
            sky[:, r, c] = np.maximum(sky[:, r, c], brightness)


def _paint_disc(
    sky: np.ndarray, xs: np.ndarray, ys: np.ndarray, scene: SceneAttributes, light: _Light, radius: float
) -> None:
    size = sky.shape[2]
    top = max(0, int((light.sun_y - radius * 1.5) * size))
    bottom = min(int((light.sun_y + radius * 1.5) * size) + 1, sky.shape[1])
    if bottom <= top:
        return
    dx, dy = xs - np.float32(light.sun_x), ys[top:bottom] - np.float32(light.sun_y)
    distance = np.sqrt(dx * dx + dy * dy)
    edge = 0.75 / size
    cover = _smoothstep(radius + edge, radius - edge, distance)
    if scene.sky_disc == "sun":
        colour = np.minimum(light.sun * np.float32(1.3) + np.float32(0.25), np.float32(1.0))
    else:
        # The moon's maria: a darker blotch off the centre.
        mx, my = dx - np.float32(radius * 0.3), dy + np.float32(radius * 0.2)
        mare = 1.0 / (1.0 + (mx * mx + my * my) * np.float32(1.0 / (radius * radius * 0.2)))
        colour = light.sun * (1.0 - 0.2 * mare)
    region = sky[:, top:bottom]
    region += (colour - region) * cover


def _paint_clouds(
    sky: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    scene: SceneAttributes,
    light: _Light,
    noise: np.ndarray,
    halo: np.ndarray,
) -> None:
    # Clouds lie on a plane above the ground. Near the horizon that plane is far
    # away, so its clouds look smaller and flattened: sample it in perspective.
    elevation = np.maximum(1.0 - ys * np.float32(1.0 / scene.horizon), 0.0)        # [rows, 1]
    depth = 1.0 / (elevation + np.float32(0.4))                                     # 0.71 .. 2.5
    height, width = noise.shape
    plane_rows = (depth - np.float32(0.71)) * np.float32((height - 1) / 1.8)
    plane_cols = np.float32((width - 1) / 2) + (xs - np.float32(0.5)) * depth * np.float32((width - 1) / 2.5)
    sampled = _sample_grid(noise, plane_rows, plane_cols)                             # [rows, size]

    threshold = 1.7 - 3.4 * scene.cloud_cover
    density = _smoothstep(threshold, threshold + 0.9, sampled)
    thickness = _smoothstep(threshold + 0.3, threshold + 2.0, sampled) * np.float32(0.75)
    colour = light.cloud_lit + (light.cloud_shade - light.cloud_lit) * thickness
    colour += halo * np.float32(0.6 * light.glow) * light.sun
    # Far clouds take the colour of the air in front of them.
    haze = (1.0 - elevation) * (1.0 - elevation) * np.float32(0.5)
    colour += (light.horizon - colour) * haze
    sky += (colour - sky) * density


# --------------------------------------------------------------------------- land


def _paint_ridge(
    canvas: _Canvas,
    scene: SceneAttributes,
    light: _Light,
    rng: np.random.Generator,
    horizon_sky: np.ndarray,
    layer: int,
) -> None:
    """Ridge number `layer` (0 = farthest): far ones tall, jagged and pale with distance, near ones low and darker."""
    nearness = layer / (scene.ridges - 1) if scene.ridges > 1 else 0.4   # 0 farthest .. 1 nearest
    distance = 1.0 - 0.75 * nearness
    height = min((0.34 - 0.24 * nearness) * rng.uniform(0.7, 1.15), scene.horizon - 0.07)
    profile = _profile_noise(rng, cells=int(rng.integers(2, 5)), octaves=5, ridged=nearness < 0.6)
    crest = scene.horizon - height * (0.3 + 0.7 * profile)                             # _PROFILE_SAMPLES samples
    patch_bias = rng.uniform(-0.5, 0.5)
    # Snow lies above a snow line (an altitude, here a height above the water line).
    if scene.season == "winter":
        snow_line = rng.uniform(0.0, 0.06)
    else:
        snow_line = height * rng.uniform(0.55, 0.8) if rng.random() < 0.6 else 1.0

    top = _resample_profile(crest, canvas.xs)
    row0, row1 = max(0, int(top.min() * canvas.side) - 1), canvas.horizon_row
    if row1 <= row0:
        return
    cover = _coverage(canvas.ys[row0:row1] - top, canvas.side)
    rows = canvas.coarse_rows(row0, row1)
    ys, xs = canvas.coarse_ys[rows], canvas.coarse_xs
    below_crest = ys - _resample_profile(crest, xs)                                  # [rows, size]
    terrain, streaks = canvas.terrain[rows], canvas.streaks[rows]

    palette = _LAND_PALETTES[scene.season]
    base = _rgb(_mix(palette["rock"][0], palette["hill"][0], nearness))
    patch = _rgb(_mix(palette["rock"][1], palette["hill"][1], nearness))
    colour = base + (patch - base) * _smoothstep(-0.6 - patch_bias, 0.8 - patch_bias, terrain)
    if snow_line < height:
        altitude = np.float32(scene.horizon - snow_line) - ys + np.float32(0.05) * streaks + np.float32(0.03) * terrain
        colour += (_SNOW - colour) * _smoothstep(-0.012, 0.012, altitude)

    # Faces turned toward the light are brighter. A face's orientation is the
    # crest's slope smoothed over a width that grows with the distance below
    # the crest, so each peak casts a lit and a shaded flank down the mountain.
    facing = _face_orientation(crest, xs, below_crest) * np.float32(light.from_right)
    shade = 0.78 + 0.32 * facing / (1.0 + np.abs(facing)) + 0.07 * streaks + 0.05 * terrain
    colour *= _clamp(shade, 0.3, 1.3) * light.land

    fog = _fog_amount(light.fog_density, distance)
    mist = _smoothstep(scene.horizon - 0.14, scene.horizon, ys) * np.float32(0.55 * (1 - fog))
    colour += (horizon_sky - colour) * (fog + mist)
    canvas.paint(row0, row1, colour, cover)


_FACE_SCALES = (0.01, 0.04, 0.12)   # crest smoothing widths, as fractions of the image width


def _face_orientation(crest: np.ndarray, xs: np.ndarray, below_crest: np.ndarray) -> np.ndarray:
    """Slope of the mountain face at each pixel: >0 faces right, <0 faces left."""
    fine, medium, broad = (_resample_profile(slope, xs) for slope in _crest_slopes(crest))
    # 0 at the crest, 1 one-tenth of the image below it, 2 and beyond further down.
    step = _clamp(below_crest * np.float32(10.0), 0.0, 2.0)
    return fine + (medium - fine) * np.minimum(step, 1.0) + (broad - medium) * np.maximum(step - 1.0, 0.0)


def _crest_slopes(crest: np.ndarray) -> np.ndarray:
    """d(crest)/dx over each of _FACE_SCALES (x in image fractions): [scales, samples]."""
    ahead, behind, pad, scale = _slope_tables(crest.size)
    padded = np.concatenate([np.full(pad, crest[0]), crest, np.full(pad, crest[-1])])
    return (padded[ahead] - padded[behind]) * scale


@functools.lru_cache(maxsize=None)
def _slope_tables(samples: int) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    halves = [max(1, int(width * (samples - 1) / 2)) for width in _FACE_SCALES]
    pad = max(halves)
    index = np.arange(samples) + pad
    ahead = np.stack([index + half for half in halves])
    behind = np.stack([index - half for half in halves])
    scale = np.array([(samples - 1) / (2 * half) for half in halves], np.float32)[:, None]
    return ahead, behind, pad, scale


def _paint_treeline(
    canvas: _Canvas, scene: SceneAttributes, light: _Light, rng: np.random.Generator, horizon_sky: np.ndarray
) -> None:
    """A band of forest standing on the water line or at the far edge of the meadow."""
    hill = _profile_noise(rng, cells=2, octaves=3, ridged=False)
    hill_height = rng.uniform(0.0, 0.07)
    tree_height = rng.uniform(0.025, 0.07)
    crowns = _tree_crowns(rng, canvas.xs, count=int(rng.integers(40, 90)), height=tree_height, kind=scene.forest)
    top = scene.horizon - hill_height * _resample_profile(hill, canvas.xs) - crowns

    row0, row1 = max(0, int(top.min() * canvas.side) - 1), canvas.horizon_row
    cover = _coverage(canvas.ys[row0:row1] - top, canvas.side)
    rows = canvas.coarse_rows(row0, row1)
    dark, bright = (_rgb(c) for c in _LAND_PALETTES[scene.season]["trees"])
    texture = canvas.terrain[::-1][rows]
    streaks = canvas.streaks[rows]
    colour = dark + (bright - dark) * _smoothstep(-0.3, 1.2, texture)
    colour *= light.land * (0.85 + 0.12 * texture + 0.1 * streaks)
    if scene.season == "winter":
        colour += (_SNOW * light.land - colour) * (_smoothstep(0.4, 1.4, texture) * np.float32(0.5))
    colour += (horizon_sky - colour) * _fog_amount(light.fog_density, 0.15)
    canvas.paint(row0, row1, colour, cover)


def _tree_crowns(rng: np.random.Generator, xs: np.ndarray, count: int, height: float, kind: str) -> np.ndarray:
    """Height of the canopy above its base at each column: pointed firs or round crowns."""
    centres = rng.random(count, dtype=np.float32)
    heights = (height * rng.uniform(0.5, 1.2, count)).astype(np.float32)
    offset = np.abs(xs - centres[:, None])                                           # [trees, columns]
    if kind == "conifer":
        crowns = heights[:, None] - offset * np.float32(1.0 / 0.28)    # half as wide as 0.28 x its height
    else:
        half_width = (heights * 0.55)[:, None]
        reach = 1.0 - (offset / half_width) ** 2
        crowns = heights[:, None] * np.sqrt(np.maximum(reach, 0.0))
    return np.maximum(crowns.max(axis=0), 0.0)


def _paint_ground(
    canvas: _Canvas, scene: SceneAttributes, light: _Light, rng: np.random.Generator, horizon_sky: np.ndarray
) -> None:
    """A meadow (or snowfield) receding to the horizon, with bushes; soft, so computed at the output size."""
    bushes = rng.uniform(1.8, 3.0)     # how rare bushes are (a threshold on the noise)
    rows = canvas.coarse_rows(canvas.horizon_row, canvas.side)
    ys = canvas.coarse_ys[rows]
    below = np.maximum(ys - np.float32(scene.horizon), 0.0) * np.float32(1.0 / (1.0 - scene.horizon))  # 0 .. 1 at the bottom
    texture = _ground_plane(canvas.plane_grid, canvas.coarse_xs, below, stretch=1.0)
    palette = _LAND_PALETTES[scene.season]
    low, high = (_rgb(c) for c in palette["ground"])
    colour = low + (high - low) * _smoothstep(-1.0, 1.0, texture)
    colour += (_rgb(palette["trees"][0]) - colour) * _smoothstep(bushes, bushes + 0.3, texture)
    colour *= (0.8 - 0.2 * below + 0.1 * texture) * light.land
    colour += (horizon_sky - colour) * _fog_amount(light.fog_density, 0.35 * (1 - below))
    canvas.paint(canvas.horizon_row, canvas.side, colour)


def _ground_plane(noise: np.ndarray, xs: np.ndarray, below: np.ndarray, stretch: float) -> np.ndarray:
    """`noise` laid flat on the ground or water, seen in perspective: [rows below the horizon, columns].

    `stretch` > 1 widens its features sideways (ripples on water).
    """
    depth = 1.0 / (below + np.float32(0.15))                                          # ~6.7 at the horizon .. ~0.9 at the bottom
    height, width = noise.shape
    plane_rows = (depth - np.float32(0.85)) * np.float32((height - 1) / 6.0)
    plane_cols = np.float32((width - 1) / 2) + (xs - np.float32(0.5)) * depth * np.float32((width - 1) / 7.0 / stretch)
    return _sample_grid(noise, plane_rows, plane_cols)


def _paint_water(
    canvas: _Canvas, scene: SceneAttributes, light: _Light, rng: np.random.Generator, horizon_sky: np.ndarray
) -> None:
    """A lake or the sea mirroring what is above it; computed at the output size (ripples blur it anyway)."""
    calm = scene.water == "lake" and rng.random() < 0.6
    wind = rng.uniform(0.002, 0.005) if calm else rng.uniform(0.005, 0.014)
    mirror = rng.uniform(0.75, 0.92) if scene.water == "lake" else rng.uniform(0.45, 0.7)

    rows = canvas.coarse_rows(canvas.horizon_row, canvas.side)
    ys, xs = canvas.coarse_ys[rows], canvas.coarse_xs
    size = len(xs)
    below = np.maximum(ys - np.float32(scene.horizon), 0.0) * np.float32(1.0 / (1.0 - scene.horizon))   # [rows, 1]
    ripples = _ground_plane(canvas.plane_grid, xs, below, stretch=4.0)               # [rows, size]

    # What the water mirrors: the finished scene above the water line, averaged
    # down to the output size, each point as far above the line as it is below.
    above = _downsample(canvas.rgb[:, : canvas.horizon_row - canvas.horizon_row % SUPERSAMPLE])
    mirrored = ((np.float32(2.0 * scene.horizon) - ys) * np.float32(size)).astype(np.int64)
    source_rows = mirrored - (np.abs(ripples) * np.float32(wind * size * 0.5)).astype(np.int64)
    source_cols = np.arange(size) + (ripples * (np.float32(wind * size) * (0.3 + below))).astype(np.int64)
    reflection = above[:, _clamp(source_rows, 0, above.shape[1] - 1), _clamp(source_cols, 0, size - 1)]

    body = _rgb(_WATER_COLOURS[scene.water]) * light.land + horizon_sky * np.float32(0.15)
    see_through = np.float32(0.1) + np.float32(0.45) * below                          # steeper view near the bottom
    colour = reflection * np.float32(mirror)
    colour += (body - colour) * see_through
    if not calm:
        colour += (horizon_sky * np.float32(1.1) - colour) * (_smoothstep(0.8, 2.2, ripples) * np.float32(0.3))
    if scene.sky_disc != "none":
        # Glitter: broken bright ripples on the line below the sun or moon.
        across = (xs - np.float32(light.sun_x)) / (np.float32(0.02) + np.float32(0.1) * below)
        strength = np.float32(0.8 if scene.sky_disc == "sun" else 0.5)
        sparkle = _smoothstep(0.2, 1.4, ripples) * strength / (1.0 + across * across)
        colour += (light.sun - colour) * np.minimum(sparkle, 1.0)
    colour += (horizon_sky - colour) * _fog_amount(light.fog_density, 0.3 * (1 - below))
    canvas.paint(canvas.horizon_row, canvas.side, colour)


def _paint_shore(canvas: _Canvas, scene: SceneAttributes, light: _Light, rng: np.random.Generator) -> None:
    """A strip of near shore across the bottom: grass, sand, or snow."""
    edge = _profile_noise(rng, cells=3, octaves=4, ridged=False)
    height = rng.uniform(0.05, 0.16)
    top = 1.0 - height * (0.35 + 0.65 * _resample_profile(edge, canvas.xs))
    row0 = max(0, int(top.min() * canvas.side) - 1)
    cover = _coverage(canvas.ys[row0:] - top, canvas.side)
    low, high = (_rgb(c) for c in _LAND_PALETTES[scene.season]["ground"])
    texture = canvas.terrain[:, ::-1][canvas.coarse_rows(row0, canvas.side)]
    colour = low + (high - low) * _smoothstep(-1.0, 1.0, texture)
    colour *= (0.47 + 0.11 * texture) * light.land
    canvas.paint(row0, canvas.side, colour, cover)


def _paint_foreground_trees(canvas: _Canvas, light: _Light, rng: np.random.Generator) -> None:
    """One to three tall firs near the left or right edge, dark against the view."""
    count = int(rng.integers(1, 4))
    on_left = rng.random() < 0.5
    dark = _rgb(_LAND_PALETTES["summer"]["trees"][0]) * np.float32(0.6) * light.land
    for _ in range(count):
        centre = rng.uniform(-0.02, 0.2)
        centre = centre if on_left else 1.0 - centre
        top = rng.uniform(0.04, 0.4)
        half_width = (1.0 - top) * rng.uniform(0.1, 0.16)
        tiers = rng.uniform(6, 11)
        wobble = rng.random(33, dtype=np.float32)

        row0 = int(top * canvas.side)
        down = (canvas.ys[row0:, 0] - np.float32(top)) * np.float32(1.0 / (1.0 - top))   # 0 at the tip .. 1 at the bottom
        branch = down * np.float32(tiers)
        sawtooth = branch - np.floor(branch)                                             # each tier widens downwards
        width = np.float32(half_width) * down * (0.55 + 0.35 * sawtooth + 0.1 * _resample_profile(wobble, down))
        offset = canvas.xs - np.float32(centre)
        cover = _coverage(width[:, None] - np.abs(offset), canvas.side)
        lit = np.where(offset * np.float32(light.sun_x - centre) > 0, np.float32(1.15), np.float32(0.85))
        # Each tier of branches is lit on top and shadowed underneath by the next.
        tier_shade = (np.float32(1.25) - np.float32(0.5) * sawtooth)[:, None]
        region = canvas.rgb[:, row0:]
        region += (dark * (lit * tier_shade) - region) * cover


# --------------------------------------------------------------------------- finishing


def _vignette(side: int, strength: float) -> np.ndarray:
    """Lens fall-off toward the corners: [side, side] factors, 1 at the centre."""
    return 1.0 - np.float32(strength) * _squared_radius(side)


@functools.lru_cache(maxsize=8)
def _squared_radius(side: int) -> np.ndarray:
    centres = ((np.arange(side) + 0.5) / side - 0.5).astype(np.float32)
    return centres[:, None] ** 2 + centres[None, :] ** 2


def _add_grain(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Faint sensor noise at the output size, the same on all three channels."""
    grain = rng.integers(-2, 3, (image.height, image.width, 1), dtype=np.int16)
    return Image.fromarray(_clamp(np.asarray(image, dtype=np.int16) + grain, 0, 255).astype(np.uint8))


def _downsample(layer: np.ndarray) -> np.ndarray:
    """Average [..., rows, columns] over SUPERSAMPLE x SUPERSAMPLE blocks (both must divide)."""
    # Strided sums: several times faster than reshape(...).mean(axis=...) here.
    total = layer[..., ::SUPERSAMPLE, ::SUPERSAMPLE].copy()
    for row, col in itertools.product(range(SUPERSAMPLE), repeat=2):
        if row or col:
            total += layer[..., row::SUPERSAMPLE, col::SUPERSAMPLE]
    return total * np.float32(1.0 / SUPERSAMPLE**2)


def _upsample(layer: np.ndarray) -> np.ndarray:
    """Repeat each pixel of [..., rows, columns] SUPERSAMPLE x SUPERSAMPLE times."""
    return np.repeat(np.repeat(layer, SUPERSAMPLE, axis=-2), SUPERSAMPLE, axis=-1)


# --------------------------------------------------------------------------- noise and helpers

_PROFILE_SAMPLES = 257


def _profile_noise(rng: np.random.Generator, cells: int, octaves: int, ridged: bool) -> np.ndarray:
    """1-D fractal value noise in 0..1 at _PROFILE_SAMPLES points; `ridged` gives sharp peaks."""
    left, blend, amplitude, lattice_size = _profile_tables(cells, octaves)
    lattice = rng.random(lattice_size, dtype=np.float32)
    low = lattice[left]
    values = low + (lattice[left + 1] - low) * blend                                  # [octaves, samples]
    if ridged:
        values[:3] = 1.0 - np.abs(2.0 * values[:3] - 1.0)
    total = (values * amplitude).sum(axis=0)
    low, high = total.min(), total.max()
    return (total - low) / (high - low + np.float32(1e-6))


@functools.lru_cache(maxsize=None)
def _profile_tables(cells: int, octaves: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Where each profile sample falls in the octaves' lattices (all in one array), and how far along."""
    lefts, blends, offset = [], [], 0
    for octave in range(octaves):
        n = cells * 2**octave
        position = np.linspace(0.0, n, _PROFILE_SAMPLES)
        left = np.minimum(position.astype(np.int64), n - 1)
        f = position - left
        lefts.append(left + offset)
        blends.append(f * f * (3 - 2 * f))
        offset += n + 1
    amplitude = 0.5 ** np.arange(octaves)
    return (
        np.stack(lefts),
        np.stack(blends).astype(np.float32),
        (amplitude / amplitude.sum()).astype(np.float32)[:, None],
        offset,
    )


def _resample_profile(profile: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """A profile sampled evenly over 0..1, linearly interpolated at `xs`."""
    return np.interp(xs, _profile_positions(profile.size), profile).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _profile_positions(samples: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, samples)


def _noise_field(rng: np.random.Generator, cells: tuple[int, int], octaves: int) -> np.ndarray:
    """2-D fractal noise, mean 0 and std 1, on a grid that does not depend on the image size.

    Each octave refines the grid (cubic B-spline subdivision, which stays
    smooth) and adds fresh detail at the new, finer spacing.
    """
    field = rng.random((cells[0] + 1, cells[1] + 1), dtype=np.float32)
    amplitude = np.float32(1.0)
    for _ in range(octaves - 1):
        amplitude *= np.float32(0.6)
        field = _subdivide(field)
        field += amplitude * rng.random(field.shape, dtype=np.float32)
    return (field - field.mean()) / (field.std() + np.float32(1e-6))


def _subdivide(grid: np.ndarray) -> np.ndarray:
    """One step of cubic B-spline subdivision in both directions: n points -> 2n - 1."""
    for _ in range(2):
        n = grid.shape[0]
        finer = np.empty((2 * n - 1,) + grid.shape[1:], np.float32)
        finer[0], finer[-1] = grid[0], grid[-1]
        finer[1::2] = (grid[:-1] + grid[1:]) * np.float32(0.5)
        finer[2:-1:2] = (grid[:-2] + grid[1:-1] * np.float32(6.0) + grid[2:]) * np.float32(0.125)
        grid = finer.T
    return np.ascontiguousarray(grid)


def _sample_grid(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """`grid` smoothly interpolated at fractional grid coordinates (clamped to its edges).

    rows: [n, 1]; cols: [m] (the same columns on every row) or [n, m]. Returns [n, m].
    """
    height, width = grid.shape
    rows = _clamp(rows, 0.0, height - 1.001)
    top = rows[:, 0].astype(np.int64)
    lines = grid[top]
    lines = lines + (grid[top + 1] - lines) * _smooth_fraction(rows - top[:, None])  # [n, width]
    cols = _clamp(cols, 0.0, width - 1.001)
    left = cols.astype(np.int64)
    if cols.ndim == 1:
        before, after = lines[:, left], lines[:, left + 1]
    else:
        line = np.arange(len(lines))[:, None]
        before, after = lines[line, left], lines[line, left + 1]
    return before + (after - before) * _smooth_fraction(cols - left)


def _smooth_fraction(f: np.ndarray) -> np.ndarray:
    return (f * f * (3 - 2 * f)).astype(np.float32, copy=False)


def _fog_amount(density: float, distance: float | np.ndarray) -> np.ndarray:
    # 1 - 1/(1 + d x) rises like 1 - exp(-d x) but is exact arithmetic.
    return 1.0 - 1.0 / (1.0 + np.float32(density) * np.asarray(distance, np.float32))


def _coverage(inside: np.ndarray, side: int) -> np.ndarray:
    """How much of each pixel (0..1) a shape covers, from the signed distance
    of the pixel centre inside its edge (image fractions) on a side x side grid."""
    return _clamp(inside * np.float32(side) + np.float32(0.5), 0.0, 1.0)


def _clamp(x: np.ndarray, low: float, high: float) -> np.ndarray:
    # Two ufuncs: ndarray.clip goes through a Python wrapper that costs more than the work here.
    return np.minimum(np.maximum(x, low), high)


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = _clamp((x - np.float32(edge0)) * np.float32(1.0 / (edge1 - edge0)), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _rgb(colour) -> np.ndarray:
    """A colour as a [3, 1, 1] array, ready to multiply [rows, columns] fields."""
    return np.asarray(colour, np.float32).reshape(3, 1, 1)


def _mix(a, b, amount: float) -> np.ndarray:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a + (b - a) * np.float32(amount)


def _jitter(rng: np.random.Generator, colour: tuple[float, float, float], amount: float) -> np.ndarray:
    scale = 1.0 + amount * rng.standard_normal(3)
    return np.clip(np.asarray(colour) * scale, 0.0, 1.0).astype(np.float32)


def _luminance(colour: np.ndarray) -> float:
    return float(0.2126 * colour[0] + 0.7152 * colour[1] + 0.0722 * colour[2])
