"""The error evaluation raises for inputs it cannot score."""

from ganlib.errors import UserFacingError


class EvaluationError(UserFacingError):
    """Evaluation cannot run on these inputs; the message says which and what to do."""
