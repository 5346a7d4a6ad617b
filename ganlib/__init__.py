"""scenegan's library: every stage's real work, with no Prefect import anywhere.

`tasks/` and `flows/` wrap these functions for orchestration; tests and
benchmarks call them directly.
"""

__version__ = "0.1.0"
