"""Training: `fit`, its callbacks, and tf.distribute strategies."""
