"""`python -m keras_unet_sr.cli` is `keras-unet-sr`."""

import sys

from keras_unet_sr.cli import main

sys.exit(main())
