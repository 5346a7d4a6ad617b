"""Dataset versions over time: reading revisions, retraining on a new version, comparing versions.

    revisions.py  a git revision / DVC experiment / the workspace as files to read
    history.py    results/history.csv: one row per retrain
    retrain.py    retrain as a DVC experiment when the dataset version changed
    compare.py    one table of metrics across dataset versions
    sweep.py      parameter sets as DVC experiments on one dataset version, ranked by FID
    plot.py       that table as a PNG
"""
