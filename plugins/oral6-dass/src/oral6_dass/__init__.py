"""DaSS: meta-prediction of distilled student accuracy on unseen tasks (Lee et al., ICLR 2023)."""

__version__ = "0.1.0"
