"""TF-Serving bundles and gRPC (installed as `keras_unet_sr.export`)."""
