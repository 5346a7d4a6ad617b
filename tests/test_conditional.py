"""Class-conditional G and D (issue 22, item 3): shapes, what conditioning adds, training on labels.

The two-colour toy is the test that fails if the label is ignored: class 0 is
solid red, class 1 solid blue, and after a short conditional run the generator
must draw red for class 0 and blue for class 1 from the same latents.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from train_support import (  # noqa: F401
    assert_same_tensors,
    checkpoint_tensors,
    one_thread,
    smooth_images,
    tiny_params,
    write_labels,
    write_prepared,
)

from ganlib.errors import UserFacingError
from ganlib.logs import plain_logger
from ganlib.models.generator_file import load_generator
from ganlib.models.registry import ARCHITECTURES
from ganlib.training.checkpoint import list_checkpoints
from ganlib.training.loop import train_gan
from ganlib.training.real_batches import ClassBalancedSampler

LOG = plain_logger("scenegan-tests")


def labelled_root(root: Path, params, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> Path:
    write_labels(write_prepared(root, params, images), labels, classes)
    return root


Z_INPUT_WEIGHT = {"resnet": "linear.weight", "r3gan": "modulation.weight"}
CONDITIONAL_BATCHNORM = {"dcgan"}   # DCGAN's G takes the class in its BatchNorms


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_conditioning_adds_only_the_class_modules_and_the_labels_change_the_output(arch):
    spec = ARCHITECTURES[arch]
    z_dim, classes = 16, 3
    torch.manual_seed(0)
    plain_g, plain_d = spec.generator(z_dim=z_dim, width=8, resolution=32), spec.discriminator(width=8, resolution=32)
    torch.manual_seed(0)
    cond_g = spec.generator(z_dim=z_dim, width=8, resolution=32, n_classes=classes)
    cond_d = spec.discriminator(width=8, resolution=32, n_classes=classes)

    # Unconditional networks have no class modules: their parameters and files are as before.
    assert not any("classes" in name for name in {**plain_g.state_dict(), **plain_d.state_dict()})
    g_extra = sum(p.numel() for p in cond_g.parameters()) - sum(p.numel() for p in plain_g.parameters())
    if arch in CONDITIONAL_BATCHNORM:
        # G: every BatchNorm's one scale and shift per feature map becomes one per class.
        norm_features = sum(m.num_features for m in plain_g.modules() if isinstance(m, torch.nn.BatchNorm2d))
        assert norm_features > 0 and g_extra == 2 * norm_features * (classes - 1)
    else:
        # G: a class embedding of z's size, and the layer that reads z reads twice as many inputs.
        reads_z = plain_g.state_dict()[Z_INPUT_WEIGHT[arch]]
        assert g_extra == classes * z_dim + reads_z.numel()
    # D: one projection vector per class, of the size of the features its head reads.
    d_extra = sum(p.numel() for p in cond_d.parameters()) - sum(p.numel() for p in plain_d.parameters())
    assert d_extra % classes == 0 and d_extra // classes in (8 * 2**k for k in range(6))

    z = torch.randn(4, z_dim)
    cond_g.eval()
    same = cond_g(z, torch.tensor([0, 1, 2, 0]))
    assert same.shape == (4, 3, 32, 32)
    assert torch.equal(same, cond_g(z, torch.tensor([0, 1, 2, 0])))
    assert not torch.allclose(same, cond_g(z, torch.tensor([1, 2, 0, 1])))
    assert torch.equal(cond_g(z), cond_g(z, torch.arange(4) % classes))  # no labels: class i mod C
    logits = cond_d(same, torch.tensor([0, 1, 2, 0]))
    assert logits.shape == (4,) and not torch.allclose(logits, cond_d(same, torch.tensor([1, 1, 1, 1])))
    with pytest.raises(ValueError, match="class label"):
        cond_d(same)


def test_class_balanced_sampler_shows_every_class_equally_and_resumes():
    labels = np.array([0] * 30 + [1] * 5 + [2] * 10)
    sampler = ClassBalancedSampler(labels, seed=3)
    epoch = sampler.take(90)  # 3 classes x 30, the largest class
    assert np.bincount(labels[epoch]).tolist() == [30, 30, 30]
    assert set(epoch[labels[epoch] == 1]) == set(range(30, 35))  # the small class repeats, all of it
    state = sampler.state_dict()
    ahead = sampler.take(50)
    again = ClassBalancedSampler(labels, seed=3)
    again.load_state_dict(state)
    assert np.array_equal(again.take(50), ahead)


# The ResNet learns the toy in a few kimg (a width-8 DCGAN needs about twice as long to separate them).
TOY = ("train.arch=resnet", "train.loss=hinge", "train.conditional=true", "train.z_dim=8", "train.kimg=1.6",
       "train.tick_kimg=0.8", "train.batch_size=32", "train.microbatch=32")


def test_a_short_conditional_run_draws_the_colour_of_each_class(tmp_path, one_thread):
    # The ResNet: a DCGAN this small does not learn even solid colours in a few hundred steps, with or without classes.
    params = tiny_params(*TOY)
    colours = np.array([[230, 20, 20], [20, 20, 230]], dtype=np.uint8)  # class 0 red, class 1 blue
    labels = np.arange(64) % 2
    images = np.broadcast_to(colours[labels][:, None, None, :], (64, 32, 32, 3)).copy()
    root = labelled_root(tmp_path, params, images, labels, ["red", "blue"])
    summary = train_gan(params, LOG, root)

    generator, info = load_generator(summary.generator_path, torch.device("cpu"))
    assert info.classes == ("red", "blue")
    z = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        red = generator(z, torch.zeros(32, dtype=torch.long)).mean(dim=(0, 2, 3))
        blue = generator(z, torch.ones(32, dtype=torch.long)).mean(dim=(0, 2, 3))
    # Channels in [-1, 1]: red has R above B, blue the reverse; a generator that ignored the label would
    # draw the same colour for both (the same latents), so the two differences would be equal.
    assert red[0] > red[2] and blue[2] > blue[0], (red, blue)
    assert (red[0] - red[2]) - (blue[0] - blue[2]) > 0.8, (red, blue)


def test_a_resumed_conditional_run_is_bit_identical(tmp_path, one_thread):
    images, labels = smooth_images(48, 32), np.arange(48) % 3
    straight_params = tiny_params("train.class_balanced=true")
    straight = train_gan(straight_params, LOG,
                         labelled_root(tmp_path / "a", straight_params, images, labels, ["dawn", "day", "dusk"]))
    root = labelled_root(tmp_path / "b", straight_params, images, labels, ["dawn", "day", "dusk"])
    train_gan(tiny_params("train.class_balanced=true", "train.kimg=0.192"), LOG, root)
    resumed = train_gan(straight_params, LOG, root)
    assert resumed.resumed_from is not None
    assert_same_tensors(checkpoint_tensors(list_checkpoints(straight.run_dir)[-1])["networks"],
                        checkpoint_tensors(list_checkpoints(resumed.run_dir)[-1])["networks"])


def test_the_class_names_are_part_of_the_run_identity(tmp_path, one_thread):
    params = tiny_params("train.kimg=0.064")
    images, labels = smooth_images(32, 32), np.arange(32) % 2
    first = train_gan(params, LOG, labelled_root(tmp_path / "a", params, images, labels, ["day", "night"]))
    renamed = train_gan(params, LOG, labelled_root(tmp_path / "b", params, images, labels, ["dawn", "dusk"]))
    unlabelled_root = tmp_path / "c"
    write_prepared(unlabelled_root, params, images)
    plain = train_gan(params, LOG, unlabelled_root)
    assert len({first.run_dir.name, renamed.run_dir.name, plain.run_dir.name}) == 3
    assert json.loads((first.out_dir / "params.json").read_text())["train"]["conditional"] is True
    assert json.loads((plain.out_dir / "params.json").read_text())["train"]["conditional"] is False


def test_conditional_true_without_labels_is_refused_naming_the_setting(tmp_path):
    params = tiny_params("train.conditional=true")
    write_prepared(tmp_path, params, smooth_images(16, 32))
    with pytest.raises(UserFacingError, match="train.conditional is true.*no class labels"):
        train_gan(params, LOG, tmp_path)
    assert not (tmp_path / params.base.paths.train).exists()
