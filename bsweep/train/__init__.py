"""Training: one trial entry point (`trial`), THE loop (`engine`), fused members, data and models on
the device, timing. Imports nothing from `bsweep.sweep` or `bsweep.analysis`."""
