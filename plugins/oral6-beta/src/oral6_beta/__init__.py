"""BETA (divide to adapt) for black-box domain adaptation, with DINE and distillation baselines."""
