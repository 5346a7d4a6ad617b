"""The data side: raw photos in, the prepared dataset out (the preprocess stage).

    scenes.py      the embedded default dataset: deterministic procedural natural scenes
    raw_data.py    data/raw present: pulled from the DVC remote, or the default dataset generated
    importer.py    a folder or archive of photos copied into data/raw, path-safe
    images.py      decoding one file: orientation, colour modes, reject reasons
    labels.py      each image's class: from class folders, labels.csv or dataset.json
    preprocess.py  the stage: data/raw -> data/prepared, with a QA report
    dataset.py     the prepared dataset's format (a memory-mapped uint8 array + manifest)
"""
