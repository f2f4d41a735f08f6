"""SMC-Bench (Sparsity May Cry, ICLR 2023) for oral6: sparse-training pruners, sparse export and the easy/hard harness."""
