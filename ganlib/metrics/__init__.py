"""Evaluation: FID, KID, IS and precision/recall of a generator, offline.

Modules, in the order data flows through them:
    extractors.py   feature extractors registered with torch-fidelity (the FID Inception TorchScript, a tiny test net)
    sources.py      what is measured: a prepared dataset's images, a generator sampled on the fly
    features.py     images -> features: real ones through torch-fidelity's loop, generated ones from
                    ganlib.models.sampling's latents and pixels (the images publishing shows)
    reference.py    reference statistics of the real data, cached per dataset content, weights, code and settings
    scores.py       features -> FID / KID / IS / precision-recall with torch-fidelity's own formulas
    report.py       the result as metrics.json, table rows and a text table
    evaluate.py     the stage entry points: evaluate_generator, compare_datasets
    during_training.py  a cheaper FID/KID at training ticks, written as a curve
    errors.py       EvaluationError (a UserFacingError)
"""
