"""CUDOS: continual unsupervised disentangling with a self-organising spike-and-slab prior, as oral6 generative models."""
