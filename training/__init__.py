"""Training tools for tagd: data loaders, the tagger head, calibration, export, evaluation.

Everything here may import torch; nothing in `tagd/` imports this package. `tagd` and
`training/` share only the model bundle (see README "The model bundle").
"""
