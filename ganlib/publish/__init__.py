"""The publish stage: the EMA generator and its metrics -> a static sample gallery and a model package.

    run.py      run_publish_stage: the stage as DVC runs it (gallery, then model package)
    stage.py    publish_gallery: the gate, the release, publish.json
    gate.py     the better_fid rule (noise bands) and what publish.json records of it
    rescore.py  re-scoring the published generator under this run's evaluate settings
    fid_settings.py  when the gate may compare two FIDs (same extractor, sample counts, reference data, seed)
    images.py   the gallery's images (grid, samples, interpolations)
    page.py     the gallery's HTML page
    targets.py  where releases go: a local directory or an fsspec URL, written atomically
    model_package.py  the trained generator as safetensors + architecture file + checked ONNX + config.json
    onnx_export.py    the ONNX export and its onnxruntime check
    model_card.py     MODEL_CARD.md (templates/MODEL_CARD.md.j2)
    run_records.py    what preprocess and train recorded (counts, QA, code digest, training time), for the card
"""
