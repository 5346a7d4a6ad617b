"""Regenerate tests/data/dinov2_reference.json from facebookresearch/dinov2's own DinoVisionTransformer.

    git clone https://github.com/facebookresearch/dinov2 /tmp/dinov2      # outside this repository
    XFORMERS_DISABLED=1 .venv/bin/python tests/make_dinov2_reference.py /tmp/dinov2

Their model is built in the hub configuration at a tiny size (128 wide,
2 heads, 2 blocks, patch 14, 56 px), loaded with the weights that
test_fd_dinov2.reference_weights makes from a seed, and run on two seeded
image batches (the native 4 x 4 grid and an interpolated 5 x 7 one), in
float32 and float64. The recipe is read out of the test module's source,
so generator and test cannot drift apart, and ganlib is not imported: the
fixture records their numbers only. Nothing of theirs is kept here.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parent
RECIPE = ("reference_weights", "reference_images", "digest")
WEIGHT_SEED = 20231
CASES = (([2, 3, 56, 56], 1), ([2, 3, 70, 98], 2))


def load_recipe() -> dict:
    """The test module's recipe functions, without importing the module (it imports ganlib)."""
    tree = ast.parse((TESTS / "test_fd_dinov2.py").read_text())
    wanted = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in RECIPE]
    namespace: dict = {}
    exec(compile("import hashlib\nimport numpy as np\nimport torch\n", "imports", "exec"), namespace)
    exec(compile(ast.Module(wanted, []), "test_fd_dinov2 recipe", "exec"), namespace)
    return namespace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a facebookresearch/dinov2 checkout")
    args = parser.parse_args()
    sys.path.insert(0, str(args.checkout))
    from dinov2.layers import MemEffAttention, NestedTensorBlock
    from dinov2.models.vision_transformer import DinoVisionTransformer

    recipe = load_recipe()
    commit = subprocess.run(["git", "-C", str(args.checkout), "rev-parse", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    model = DinoVisionTransformer(
        img_size=56, patch_size=14, embed_dim=128, depth=2, num_heads=2, mlp_ratio=4,
        block_fn=partial(NestedTensorBlock, attn_class=MemEffAttention), init_values=1.0, ffn_layer="mlp",
        block_chunks=0, num_register_tokens=0, interpolate_antialias=False, interpolate_offset=0.1,
    ).eval()
    shapes = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    state = recipe["reference_weights"](shapes, WEIGHT_SEED)
    model.load_state_dict(state, strict=True)
    cases = []
    for shape, seed in CASES:
        images = recipe["reference_images"](shape, seed)
        with torch.no_grad():
            single = model(images)
            double = model.double()(images.double())
            model.float()
        cases.append({"input_shape": shape, "input_seed": seed, "input_sha256": recipe["digest"]([images]),
                      "cls_float32": single.tolist(), "cls_float64": double.tolist()})
    fixture = {
        "source": f"github.com/facebookresearch/dinov2 @ {commit}, dinov2/models/vision_transformer.py "
                  "DinoVisionTransformer(img_size=56, patch_size=14, embed_dim=128, depth=2, num_heads=2, "
                  "mlp_ratio=4, block_fn=NestedTensorBlock with MemEffAttention, init_values=1.0, ffn_layer='mlp', "
                  "block_chunks=0, num_register_tokens=0, interpolate_antialias=False, interpolate_offset=0.1), "
                  "eval(), XFORMERS_DISABLED=1 (their plain-PyTorch attention path), torch " + torch.__version__,
        "weight_seed": WEIGHT_SEED,
        "parameter_shapes": shapes,
        "weights_sha256": recipe["digest"]([state[name] for name in sorted(state)]),
        "cases": cases,
    }
    (TESTS / "data" / "dinov2_reference.json").write_text(json.dumps(fixture, indent=1) + "\n")


if __name__ == "__main__":
    main()
