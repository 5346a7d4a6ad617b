"""Images and latent walks out of a trained generator: `scenegan generate` and the gallery's walk video.

    defaults.py  the defaults (no torch: the CLI parser reads them)
    sampler.py   latents per seed (image i uses seed S + i), fixed-size fp32 batches (repeatable pixels)
    images.py    N images as PNG files with manifest.json, into a directory or a .zip, atomically
    walk.py      a looping slerp walk through K keyframe latents -> video (the API the publish stage calls)
    video.py     frames -> MP4 (imageio-ffmpeg), else animated WebP or GIF (Pillow)

Above models, data and io; below publish, which may import it. Training and
metrics never do (tests/test_layering.py), and nothing here is in the
training run's identity: generating images re-trains nothing.
"""
