"""The publish stage: the EMA generator and its metrics -> a static sample gallery.

    stage.py    publish_gallery: the gate, the release, publish.json
    images.py   the gallery's images (grid, samples, interpolations)
    page.py     the gallery's HTML page
    targets.py  where releases go: a local directory or an fsspec URL, written atomically
"""
