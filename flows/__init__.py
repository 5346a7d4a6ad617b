"""Prefect flows: one per DVC stage, the whole pipeline, scheduled retraining, comparison."""
