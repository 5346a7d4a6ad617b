"""Stages assembled from the layers below them, where one layer must not import another.

    train.py   training (ganlib.training) with the FID curve (ganlib.metrics) attached to its
               ticks; `python -m ganlib.stages.train` is the torchrun entry point

Training never imports metrics (tests/test_layering.py): what training computes is keyed
by its own code only (ganlib/io/source.py), so the metrics code can change without
restarting a run, and the FID curve is a tick callback attached here.
"""
