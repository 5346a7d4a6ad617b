"""The model package: the trained generator as files that load without scenegan.

`<base.paths.model>/`, a DVC out of the publish stage (not cached: dvc.yaml says why), rewritten whole on every run:

    generator.safetensors  the EMA generator's state_dict (safetensors: tensors only, no pickled code)
    generator_arch.py      the architecture's own source file (ganlib/models/<arch>.py), with the class
                           conditioning it imports (ganlib/models/conditioning.py) written into it: it
                           imports only torch and the standard library; build the network from it, load the weights
    generator.onnx         the same network for onnxruntime and friends, batch axis dynamic, checked
                           against torch before it is written (ganlib/publish/onnx_export.py)
    config.json            what to build (class, build kwargs), how to sample it (latent convention,
                           output range and layout) and where it came from (params, code, data)
    samples.png            the card's example grid: the first 16 latents of the gallery's grid
    MODEL_CARD.md          what the model is, its data, training, metrics, limits, and how to load it
                           (ganlib/publish/model_card.py)

Which generator: this run's trained one (`base.paths.train/generator.pt`),
whatever the publish gate decided. The gate may keep an older release in the
gallery, but the package is a DVC output of this run's inputs: it must exist
after every `dvc repro`, and a package that silently held an older model
would no longer match the dvc.lock that names its inputs. The card and
config.json say whether the gallery shows this model (and as which release)
or kept an earlier one, and why.

The order keeps failures harmless: everything that can fail on the model
(the ONNX export and its check, the architecture's source) is built in
memory before the gallery is published, and the directory is swapped in
whole afterwards (ganlib.io.atomic.staged_directory), so a failed run leaves
the previous package as it was.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import io
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganlib.config import Params
from ganlib.errors import UserFacingError
from ganlib.formatting import iso_utc
from ganlib.io.atomic import atomic_write_bytes, staged_directory
from ganlib.models.generator_file import GeneratorInfo
from ganlib.models.registry import architecture
from ganlib.models.sampling import fixed_latents, grid_row_labels
from ganlib.publish.images import contact_sheet, encode_image, generate_all
from ganlib.publish.onnx_export import INPUT_NAME, LABELS_NAME, OUTPUT_NAME, CheckedOnnx, Exporter, export_checked_onnx
from ganlib.publish.run_records import DatasetRecord, TrainingRecord, read_dataset_record, read_training_record

PACKAGE_FORMAT = "scenegan-model-package/1"
WEIGHTS_FILE = "generator.safetensors"
ARCH_FILE = "generator_arch.py"
ONNX_FILE = "generator.onnx"
CONFIG_FILE = "config.json"
SAMPLES_FILE = "samples.png"
CARD_FILE = "MODEL_CARD.md"

ONNX_CHECK_LATENTS = 8   # latents the ONNX file is checked on (not the exporter's example batch size)
CARD_GRID = 4            # samples.png is at most 4 x 4: an example for the card, the gallery has the full grid
# The TorchScript exporter is ~10x faster (~0.5 s against ~5 s for the demo model) but cannot export
# r3gan's low-pass filter; see ganlib/publish/onnx_export.py. An architecture not listed gets the general one.
ONNX_EXPORTERS: dict[str, Exporter] = {"dcgan": "torchscript", "resnet": "torchscript", "r3gan": "torch.export"}
# What the architecture file may import: it travels alone, beside the weights.
STANDALONE_IMPORTS = frozenset(sys.stdlib_module_names) | {"torch"}
# Project modules an architecture file may import: their source is written into generator_arch.py in place
# of the import (they too may import only torch and the standard library).
INLINED_MODULES = ("ganlib.models.conditioning",)

LATENT_CONVENTION = {
    "distribution": "z ~ N(0, I), float32 [n, z_dim]",
    "seeded": "image i of seed s is made from numpy.random.RandomState(s).randn(n, z_dim)[i] as float32 "
              "(the same latent whatever n is)",
}
OUTPUT_CONVENTION = {
    "layout": "NCHW", "channels": "RGB", "range": [-1.0, 1.0],
    "to_uint8": "round(127.5 * x + 127.5), clipped to 0..255 (as the gallery's images)",
}


class ModelPackageError(UserFacingError, RuntimeError):
    """The model package cannot be built from this generator."""


@dataclass(frozen=True)
class ModelPackage:
    """The package but its card and final config: built before the gallery is published."""

    weights: bytes                # generator.safetensors
    arch_source: bytes            # generator_arch.py
    onnx: CheckedOnnx
    samples_png: bytes
    samples_grid: int             # samples.png is samples_grid x samples_grid images
    config: dict[str, Any]        # config.json without "gallery", "created_at" and "files" (package_config)
    dataset: DatasetRecord
    training: TrainingRecord

    def files(self) -> dict[str, bytes]:
        """The package's files other than config.json and the card, by name."""
        return {WEIGHTS_FILE: self.weights, ARCH_FILE: self.arch_source, ONNX_FILE: self.onnx.data,
                SAMPLES_FILE: self.samples_png}


def build_model_package(
    generator: nn.Module, generator_file: bytes, info: GeneratorInfo, params: Params, root: Path,
) -> ModelPackage:
    """Everything that can fail on the model, in memory: weights, architecture file, checked ONNX, example grid.

    `generator` is `generator_file` (generator.pt's bytes) loaded on the CPU in eval mode.
    """
    generator = generator.to(device="cpu", dtype=torch.float32).eval()
    build = generator_build(generator_file)
    class_name, arch_path, arch_source = architecture_source(info.arch, info.resolution)
    n_classes = len(info.classes)
    onnx = export_checked_onnx(
        generator, fixed_latents(ONNX_CHECK_LATENTS, info.z_dim, params.publish.seed),
        ONNX_EXPORTERS.get(info.arch, "torch.export"),
        labels=torch.arange(ONNX_CHECK_LATENTS) % n_classes if n_classes else None,
    )
    grid = min(params.publish.grid_size, CARD_GRID)
    sheet = contact_sheet(
        generate_all(generator, fixed_latents(grid**2, info.z_dim, params.publish.seed), info.resolution,
                     params.publish.batch_size, grid_row_labels(grid**2, grid, n_classes)),
        cols=grid,
    )
    dataset = read_dataset_record(root / params.base.paths.prepared)
    training = read_training_record(root / params.base.paths.train)
    config = {
        "format": PACKAGE_FORMAT,
        "architecture": info.arch,
        "class_name": class_name,
        "arch_file": ARCH_FILE,
        "arch_source": arch_path,
        "build_kwargs": build,
        "z_dim": info.z_dim,
        "resolution": info.resolution,
        # A conditional generator's classes, in label order: G(z, labels), labels int64 [n] indexing this list.
        "classes": list(info.classes),
        "latent": LATENT_CONVENTION,
        "output": OUTPUT_CONVENTION,
        "weights": {"file": WEIGHTS_FILE, "what": "EMA generator state_dict", "tensors": len(generator.state_dict())},
        "onnx": onnx_record(onnx, n_classes),
        "kimg": info.kimg,
        "preset": matching_preset(params, info.resolution),
        "params_fingerprint": info.params_fingerprint,
        "code_digest": training.code_digest,
        "precision": training.precision,
        "training_step_seconds": training.step_seconds,
        "dataset": {
            "data_md5": info.data_md5,
            "prepared_sha256": info.dataset_sha256,
            "images": dataset.images,
        },
        "data_licence": params.publish.data_licence,
        "samples": {"file": SAMPLES_FILE, "grid": grid, "seed": params.publish.seed,
                    **({"rows": "class r mod len(classes) in row r"} if n_classes else {})},
    }
    return ModelPackage(
        weights=safetensors_bytes(generator, info), arch_source=arch_source, onnx=onnx,
        samples_png=encode_image(sheet, "png"), samples_grid=grid, config=config, dataset=dataset, training=training,
    )


def package_config(package: ModelPackage, gallery: dict[str, Any], now: datetime) -> dict[str, Any]:
    """config.json: the package's config with what the gate did (`gallery`), the time, and every file's sha256."""
    return {
        **package.config,
        "gallery": gallery,
        "created_at": iso_utc(now),
        "files": {name: _sha256(data) for name, data in sorted(package.files().items())},
    }


def config_bytes(config: dict[str, Any]) -> bytes:
    """config.json as written (the card lists its sha256, so the bytes are made once, here)."""
    return (json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_model_package(destination: Path, package: ModelPackage, config: dict[str, Any], card: str) -> Path:
    """Swap the complete package into `destination`: all its files, or the previous package untouched."""
    with staged_directory(destination) as staging:
        for name, data in {**package.files(), CONFIG_FILE: config_bytes(config), CARD_FILE: card.encode()}.items():
            atomic_write_bytes(staging / name, data)
    return destination


def generator_build(generator_file: bytes) -> dict[str, Any]:
    """The build kwargs generator.pt records: what the architecture's class takes to rebuild the network."""
    record = torch.load(io.BytesIO(generator_file), map_location="cpu", weights_only=True)
    build = record.get("build") if isinstance(record, dict) else None
    if not isinstance(build, dict):
        raise ModelPackageError("generator.pt records no build kwargs; re-run the train stage (`dvc repro train`)")
    return dict(build)


def architecture_source(arch: str, resolution: int) -> tuple[str, str, bytes]:
    """(class name, repository path, source bytes) of the generator's module, checked to import only torch.

    The package carries the file as it is, so the weights load into the very
    code that trained them; a module that imported the rest of scenegan
    could not travel alone, and is refused here rather than shipped broken.
    """
    generator_class = architecture(arch, resolution).generator
    path = Path(inspect.getsourcefile(generator_class) or "")
    source = with_inlined_modules(path.read_text()).encode()
    foreign = foreign_imports(source)
    if foreign:
        raise ModelPackageError(
            f"{path}: imports {', '.join(foreign)}; the model package carries this file alone as {ARCH_FILE}, "
            "so it may import only torch and the standard library"
        )
    return generator_class.__name__, generator_class.__module__.replace(".", "/") + ".py", source


def with_inlined_modules(source: str) -> str:
    """`source` with each top-level `from <INLINED_MODULES> import ...` replaced by that module's code.

    The module's docstring and `from __future__` line are left out (the architecture file has its own);
    a comment marks where the inlined code starts and ends.
    """
    lines = source.splitlines(keepends=True)
    imports = [node for node in ast.parse(source).body
               if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in INLINED_MODULES]
    for node in reversed(imports):  # from the bottom up, so earlier line numbers stay valid
        module = sys.modules.get(node.module) or __import__(node.module, fromlist=["_"])
        body = _module_body(Path(inspect.getsourcefile(module) or "").read_text())
        block = [f"# ---- {node.module} (written in here: this file travels alone) ----\n", body,
                 f"# ---- end of {node.module} ----\n"]
        lines[node.lineno - 1 : node.end_lineno] = block
    return "".join(lines)


def _module_body(source: str) -> str:
    """A module's code without its docstring and `from __future__` imports."""
    body = [node for node in ast.parse(source).body
            if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str))
            and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")]
    lines = source.splitlines(keepends=True)
    start = min(_first_line(node) for node in body) - 1
    return "".join(lines[start:])


def _first_line(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)])


def foreign_imports(source: bytes) -> list[str]:
    """Modules `source` imports, anywhere in it, other than torch and the standard library (sorted)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = ["." * node.level + (node.module or "")]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] not in STANDALONE_IMPORTS)
    return sorted(found)


def safetensors_bytes(generator: nn.Module, info: GeneratorInfo) -> bytes:
    """The state_dict as safetensors, with what it is in the header's metadata (strings only)."""
    from safetensors.torch import save

    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in generator.state_dict().items()}
    return save(tensors, metadata={"format": PACKAGE_FORMAT, "architecture": info.arch, "z_dim": str(info.z_dim),
                                   "resolution": str(info.resolution), "config": CONFIG_FILE})


def onnx_record(onnx: CheckedOnnx, n_classes: int = 0) -> dict[str, Any]:
    labels = {"labels": {"name": LABELS_NAME, "shape": ["batch"], "dtype": "int64", "values": f"0..{n_classes - 1}"}}
    return {
        "file": ONNX_FILE,
        "input": {"name": INPUT_NAME, "shape": ["batch", "z_dim"], "dtype": "float32"},
        **(labels if n_classes else {}),
        "output": {"name": OUTPUT_NAME, "shape": ["batch", 3, "resolution", "resolution"], "dtype": "float32"},
        "opset": onnx.opset,
        "exporter": onnx.exporter,
        "checked_latents": onnx.checked_latents,
        "max_abs_difference_vs_torch": onnx.max_abs_difference,
        "tolerance": onnx.tolerance,
        "onnxruntime": onnx.onnxruntime_version,
    }


def matching_preset(params: Params, resolution: int) -> str | None:
    """The preset (presets.yaml) whose model settings this run used, or None (the run does not record a name).

    A preset matches when each of its train.* and evaluate.* values equals
    the run's and its preprocess.resolution equals the model's; other
    preprocess keys (min_side) say nothing about the model. The first match
    in file order wins; the name is a convenience, config.json's values are
    what count.
    """
    values = params.model_dump(mode="json")
    for name, preset in params.presets.items():
        if all(_preset_value_holds(values, resolution, key, value) for key, value in preset.items()):
            return name
    return None


def _preset_value_holds(values: dict[str, Any], resolution: int, key: str, value: Any) -> bool:
    section, _, name = key.partition(".")
    if key == "preprocess.resolution":
        return value == resolution
    if section not in ("train", "evaluate"):
        return True
    node: Any = values[section]
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return node == value


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
