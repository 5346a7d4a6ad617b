"""The training stage: prepared dataset in, checkpoints and the EMA generator out.

    loop.py          train_gan: the run from start (or resume) to generator.pt
    step.py          one optimiser step of D and G (the GAN step as data)
    losses.py        GAN losses and gradient penalties
    diffaugment.py   differentiable augmentation for small datasets
    ema.py           the exponential moving average of G
    checkpoint.py    full-state checkpoints and the run's identity
    real_batches.py  the real images, batched in a resumable order
    monitor.py       per-tick upkeep: sample grids, collapse indicator
    fid_curve.py     the optional FID curve measured at ticks (ganlib.metrics)
    distributed.py   data parallel across processes: collectives and the torchrun command
    device.py        base.device -> a torch device
    __main__.py      `python -m ganlib.training`: the torchrun entry point
"""
