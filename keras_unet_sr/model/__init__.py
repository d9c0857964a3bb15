"""The network: the functional U-Net, its custom layers and its compute precision."""
