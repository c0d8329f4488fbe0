"""Preference alignment of the shapes generators (shared/method.md section 4).

config (settings, torch-free), pairs (sample, label, pair, parquet), losses (DPO family, pure), logprob (exact AR
log-likelihood, shared-mask estimate for the masked model), train (the DPO loop with checkpoints), iterate
(iterative and verifier-guided DPO). Import the submodules; this package module stays light for the CLI.
"""
