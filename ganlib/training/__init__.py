"""The training stage: prepared dataset in, checkpoints and the EMA generator out.

    loop.py          train_gan: the run from start (or resume) to generator.pt
    step.py          one optimiser step of D and G (the GAN step as data)
    losses.py        GAN losses and gradient penalties
    diffaugment.py   differentiable augmentation for small datasets
    ema.py           the exponential moving average of G
    checkpoint.py    full-state checkpoints and the run's identity
    real_batches.py  the real images, batched in a resumable order
    monitor.py       per-tick upkeep: sample grids, collapse indicator
    distributed.py   data parallel across processes: the process group and its collectives
    launch.py        how the processes start: one process, torchrun's ranks, a scheduler's

Training never imports ganlib.metrics: the FID curve during training is a tick
callback that ganlib/stages/train.py attaches (tests/test_layering.py).
"""
