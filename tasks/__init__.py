"""Thin Prefect tasks around ganlib's stage functions: logging, retries, artifacts."""
