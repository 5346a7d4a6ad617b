"""Evaluation: FID, KID, IS, precision/recall/density/coverage and memorisation of a generator, offline.

Modules, in the order data flows through them:
    extractors.py   feature extractors registered with torch-fidelity (the FID Inception TorchScript, a tiny test net)
    sources.py      what is measured: a prepared dataset's images, a generator sampled on the fly
    features.py     images -> features: real ones through torch-fidelity's loop, generated ones from
                    ganlib.models.sampling's latents and pixels (the images publishing shows)
    reference.py    reference statistics of the real data, cached per dataset content, weights, code and settings
    scores.py       features -> FID / KID / IS with torch-fidelity's own formulas
    neighbours.py   nearest neighbours between feature (or pixel) rows, tiled so memory stays bounded
    prdc.py         features -> precision / recall / density / coverage (k-NN balls)
    pixels.py       downscaled pixels of real and generated images (the memorisation check's second opinion)
    memorisation.py each sample's nearest training image: the memorisation figure and memorisation.json
    truncation_table.py  the scores per truncation psi (truncation.json)
    per_class.py    a class-conditional generator: samples in the data's class proportions, FID/KID per class
    report.py       the result as metrics.json (numbers) and evaluation.json (provenance), table rows, a text table
    evaluate.py     the stage entry points: evaluate_generator, measure_generator, score_generator, compare_datasets
    during_training.py  a cheaper FID/KID at training ticks, written as a curve
    errors.py       EvaluationError (a UserFacingError)
"""
