"""The publish stage: the EMA generator and its metrics -> a static sample gallery.

    stage.py    publish_gallery: the gate, the release, publish.json
    gate.py     the better_fid rule (noise bands) and what publish.json records of it
    rescore.py  re-scoring the published generator under this run's evaluate settings
    fid_settings.py  when the gate may compare two FIDs (same extractor, sample counts, reference data, seed)
    images.py   the gallery's images (grid, samples, interpolations)
    page.py     the gallery's HTML page
    targets.py  where releases go: a local directory or an fsspec URL, written atomically
"""
