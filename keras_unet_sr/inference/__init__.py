"""Inference: the one TF-ops tiler, the whole-image predictor and file prediction."""
