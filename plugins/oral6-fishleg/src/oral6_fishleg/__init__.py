"""FishLeg: natural-gradient optimisation with a learned inverse Fisher (Garcia et al., ICLR 2023)."""

from .likelihoods import BernoulliLikelihood, CategoricalLikelihood, FishLikelihood, GaussianLikelihood, likelihood_for_task
from .optimizer import FishLeg, FishLegConfig, FishLegFactory

__all__ = [
    "BernoulliLikelihood",
    "CategoricalLikelihood",
    "FishLeg",
    "FishLegConfig",
    "FishLegFactory",
    "FishLikelihood",
    "GaussianLikelihood",
    "likelihood_for_task",
]
