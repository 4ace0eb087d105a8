"""Modality-decoupled parallel (MDP) training on torch.distributed.

The only package that imports torch.distributed; nothing imports it. Entry points:
`python -m mdp.train` (torchrun) and `omni train` (`mdp.cli`). See `mdp.trainer` for
the four phases of one iteration and the README section for the layout.
"""
