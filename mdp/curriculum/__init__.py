"""The staged recipe of the default model (`omni train --recipe omni-mini`): encoder
pre-training, then the speech, vision and dialogue stages on the synthetic world's
packs, each on the loader path or the device path, a held-out probe during training,
and the export to an OmniModel directory.

  run.py       run_curriculum: the stages in order, their trainers, time budget, export
  pretrain.py  encoder pre-training (vision, audio CTC)
  stages.py    each stage's manifest
  data.py      the loader path's dataset over a pack
  device.py    the device path's trainer (batches built on the accelerator)
  plan.py, build.py, tables.py   the device path's step plans, batch building, pack tables
  heldout.py   the held-out probe

Modules are imported by name (`mdp.curriculum.run`); this file imports nothing.
"""
