"""Process start-up for the CLI: logging, and a quiet TensorFlow import."""

from __future__ import annotations

import logging
import os
import sys


class OneLineFormatter(logging.Formatter):
    """Log records without tracebacks (those are for `--debug`)."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info = record.exc_text = record.stack_info = None
        return super().format(record)


def quiet_tensorflow(debug: bool) -> None:
    """Keep TF's start-up chatter (CUDA probing, oneDNN notices) off the terminal.

    TF 2.21 logs these from C++ before absl logging is initialized, ignoring
    TF_CPP_MIN_LOG_LEVEL, so stderr is muted while TensorFlow loads and probes
    devices. Import errors are raised after stderr is restored.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(message)s") if debug else OneLineFormatter("%(message)s")
    )
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("keras_unet_sr").setLevel(logging.INFO)
    # tifffile logs each corrupt file; our own error names it once, clearly.
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)
    if debug:
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        import absl.logging
        import tensorflow as tf
        import tensorflow_datasets

        tf.config.list_physical_devices()
        # TFDS logs routine notices (custom configs, deprecations) as warnings.
        absl.logging.set_verbosity(absl.logging.ERROR)
        if not sys.stderr.isatty():  # progress bars are noise in logs
            tensorflow_datasets.disable_progress_bar()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
