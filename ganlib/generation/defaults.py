"""The defaults of `scenegan generate` and of the walk API, in a module without torch (the CLI parser reads them).

Cheap on purpose: the publish stage makes a walk during `make demo` on a 2-core CPU.
"""

DEFAULT_N = 16                      # images
DEFAULT_BATCH_SIZE = 32             # rows per generator call; part of what fixes the bytes (sampler.py)
DEFAULT_KEYFRAMES = 4               # a walk's keyframe latents
DEFAULT_FRAMES_PER_KEYFRAME = 20    # frames per leg between two keyframes
DEFAULT_FPS = 24                    # 4 x 20 frames at 24 fps: a 3.3 s loop
MIN_VIDEO_SIDE = 256                # walks are upscaled (nearest) to at least this: 64 px frames are hard to see,
                                    # and H.264's 4:2:0 colour smears them
