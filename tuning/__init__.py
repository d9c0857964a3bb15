"""Hyperparameter search with keras-tuner (installed as `keras_unet_sr.tuning`)."""
