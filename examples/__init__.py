"""A user's project in miniature: a model and a dataset of their own, and the Hydra configs
that name them (configs/). docs/custom.md walks through it."""
