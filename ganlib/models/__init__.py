"""GAN architectures, chosen by name (`train.arch`) through a small registry (ganlib/models/registry.py).

Import from the modules themselves: this file imports nothing, so that code which
only needs the image conventions (models/sampling.py) does not depend on every
architecture, and so is not re-keyed when one changes (ganlib/io/source.py).
"""
