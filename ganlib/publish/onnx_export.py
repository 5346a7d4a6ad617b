"""The generator as ONNX, checked against torch with onnxruntime before anyone relies on it.

    export_checked_onnx(generator, latents) -> CheckedOnnx   the .onnx bytes and how closely they match torch

Which exporter: the caller picks (EXPORTERS). torch's TorchScript-based one
("torchscript", dynamo=False) is deprecated in torch 2.14 but still works,
needs nothing beyond torch and onnx, and takes ~0.5 s for the demo's 64 px
DCGAN, where the torch.export-based one ("torch.export", dynamo=True) takes
~5 s (~15 s in a fresh process: it rebuilds its operator registry from
onnxscript's sources on every call). The TorchScript exporter cannot export
the r3gan generator, though: its low-pass filter builds a depthwise kernel
sized by the input's channel count, which that exporter leaves of unknown
shape and refuses ("convolution for kernel of unknown shape", after dumping
the whole graph to stderr). So the faster one where it works, the general
one where it does not (ganlib/publish/model_package.py says which is which);
CheckedOnnx.exporter records it. Either way the batch axis is dynamic: the
file takes any number of latents. A class-conditional generator's file takes
a second input, `labels` (int64 [batch], class indices), so the class is the
caller's choice, not the batch position.

The check runs the saved bytes in onnxruntime on the caller's latents (a
batch size other than the export's example, so a batch axis wrongly frozen
to one size fails here, not on a user's machine) and compares with the torch
output; a difference above ONNX_TOLERANCE is an error, not a footnote.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np
import torch
from torch import nn

from ganlib.errors import UserFacingError

# Outputs are in [-1, 1]; 1e-4 is 1/80 of one 8-bit level (2/255) and ~100x what export
# typically differs by (1e-6 to 1e-9 measured on the three architectures, CPU fp32).
ONNX_TOLERANCE = 1e-4
INPUT_NAME = "z"
LABELS_NAME = "labels"
OUTPUT_NAME = "images"
EXAMPLE_BATCH = 2   # what the exporter traces with; the check uses another size
OPSET = 18          # the TorchScript exporter's; the torch.export one writes its own default (recorded)
Exporter = Literal["torchscript", "torch.export"]
EXPORTERS: tuple[Exporter, ...] = ("torchscript", "torch.export")


class OnnxExportError(UserFacingError, RuntimeError):
    """The generator could not be exported to ONNX, or the export does not compute what torch does."""


@dataclass(frozen=True)
class CheckedOnnx:
    data: bytes               # the .onnx file
    opset: int                # the default-domain opset it was written with
    max_abs_difference: float  # onnxruntime vs torch, over every output value of the check batch
    tolerance: float
    checked_latents: int      # how many latents the check ran
    onnxruntime_version: str
    exporter: Exporter        # which torch exporter wrote the file


def export_checked_onnx(
    generator: nn.Module, latents: torch.Tensor, exporter: Exporter, tolerance: float = ONNX_TOLERANCE,
    labels: torch.Tensor | None = None,
) -> CheckedOnnx:
    """`generator` (eval mode, CPU, fp32) as ONNX with a dynamic batch axis, checked on `latents` [N, z_dim].

    `labels` (long [N]): the generator is class-conditional; the file takes them as its second input.
    """
    if latents.ndim != 2 or len(latents) == EXAMPLE_BATCH:
        raise ValueError(f"check latents must be [N, z_dim] with N != {EXAMPLE_BATCH}, got {tuple(latents.shape)}")
    # Imported here: only the publish stage exports, and these imports take seconds.
    import onnxruntime

    example = (torch.zeros(EXAMPLE_BATCH, latents.shape[1]),)
    if labels is not None:
        example += (torch.arange(EXAMPLE_BATCH, dtype=torch.long) % max(int(labels.max()) + 1, 1),)
    data, opset = _export(generator, example, exporter)
    feeds = {INPUT_NAME: latents.numpy().astype(np.float32)}
    if labels is not None:
        feeds[LABELS_NAME] = labels.numpy().astype(np.int64)
    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        exported = session.run([OUTPUT_NAME], feeds)[0]
    except Exception as exc:  # onnxruntime's own exception types: a file it cannot load or run
        raise OnnxExportError(f"onnxruntime cannot run the exported generator: {exc}") from exc
    with torch.no_grad():
        expected = (generator(latents) if labels is None else generator(latents, labels)).numpy()
    if exported.shape != expected.shape:
        raise OnnxExportError(f"the ONNX generator returns shape {exported.shape} for {len(latents)} latents, "
                              f"torch returns {expected.shape}")
    difference = float(np.abs(exported.astype(np.float64) - expected).max())
    if not difference <= tolerance:  # also catches NaN
        raise OnnxExportError(
            f"the ONNX generator differs from torch by up to {difference:.3g} (tolerance {tolerance:g}) on "
            f"{len(latents)} latents; the exported file would not reproduce the model's images"
        )
    return CheckedOnnx(data, opset, difference, tolerance, len(latents), onnxruntime.__version__, exporter)


def _export(generator: nn.Module, example: tuple[torch.Tensor, ...], exporter: Exporter) -> tuple[bytes, int]:
    """The .onnx bytes and their opset, from `exporter`."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter: expected one of {EXPORTERS}, got {exporter!r}")
    try:
        if exporter == "torchscript":
            return _export_torchscript(generator, example), OPSET
        return _export_torch_export(generator, example)
    except ImportError as exc:  # onnx or onnxscript missing: an install problem, said as one
        raise OnnxExportError(
            f"ONNX export ({exporter}) needs {exc.name or exc}; reinstall with `make install`") from exc
    except Exception as exc:  # torch.export's, the translators' and the symbolic functions' many error types
        raise OnnxExportError(f"torch could not export the generator to ONNX ({exporter} exporter): {exc}") from exc


def _input_names(example: tuple[torch.Tensor, ...]) -> list[str]:
    return [INPUT_NAME, LABELS_NAME][: len(example)]


def _export_torchscript(generator: nn.Module, example: tuple[torch.Tensor, ...]) -> bytes:
    buffer = io.BytesIO()
    names = _input_names(example)
    with _quiet_exporter():
        torch.onnx.export(
            generator, example, buffer, dynamo=False, opset_version=OPSET, input_names=names,
            output_names=[OUTPUT_NAME], dynamic_axes={**{name: {0: "batch"} for name in names}, OUTPUT_NAME: {0: "batch"}},
        )
    return buffer.getvalue()


def _export_torch_export(generator: nn.Module, example: tuple[torch.Tensor, ...]) -> tuple[bytes, int]:
    batch = torch.export.Dim("batch", min=1)
    with _quiet_exporter():
        program = torch.onnx.export(
            generator, example, None, dynamo=True, input_names=_input_names(example), output_names=[OUTPUT_NAME],
            dynamic_shapes=tuple({0: batch} for _ in example), external_data=False, verbose=False,
            report=False,
        )
    model = program.model_proto
    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)
    return model.SerializeToString(), int(opset)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's progress messages and warnings kept out of the stage's log (verbose=False stops its prints)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
