"""Progress of `predict` over folders: a bar on a (pseudo-)terminal, lines
every few files in a pipe, nothing with --quiet. Real processes, real TTY."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios

import numpy as np
import pytest
import tifffile

from keras_unet_sr import SuperResolutionUNet
from keras_unet_sr.progress import LOG_EVERY


@pytest.fixture(scope="module")
def twelve_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    model = SuperResolutionUNet(frames=1, scale=1, depth=1, filters=4)
    model.save(root / "model.keras")
    (root / "in").mkdir()
    rng = np.random.default_rng(0)
    for i in range(LOG_EVERY + 2):
        tifffile.imwrite(
            root / "in" / f"im{i:02d}.tif", rng.random((24, 24), "float32")
        )
    return root


def predict_command(console_script, root, out, *extra):
    model, inputs, out = (str(root / name) for name in ("model.keras", "in", out))
    return [console_script, "predict", model, inputs, "--out", out, *extra]


def test_a_pipe_gets_a_line_every_few_files_and_quiet_none(
    twelve_images, console_script
):
    done = subprocess.run(
        predict_command(console_script, twelve_images, "piped"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("predict:")]
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith(f"predict: {LOG_EVERY}/{LOG_EVERY + 2} files, ")
    assert "left" in lines[0]
    assert lines[1].startswith(f"predict: {LOG_EVERY + 2}/{LOG_EVERY + 2} files, ")
    assert "\r" not in done.stderr
    quiet = subprocess.run(
        predict_command(console_script, twelve_images, "quiet", "--quiet"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "predict:" not in quiet.stderr


def test_a_terminal_gets_a_bar(twelve_images, console_script):
    master, slave = pty.openpty()
    # A new pseudo-terminal is 0 x 0, where tqdm draws nothing: size it.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        predict_command(console_script, twelve_images, "tty"),
        stdout=subprocess.DEVNULL,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=300) == 0
    os.close(master)
    text = seen.decode(errors="replace")
    assert "predict: 100%" in text, text
    assert f"{LOG_EVERY + 2}/{LOG_EVERY + 2}" in text
    assert "file/s" in text and "\r" in text
    lines = [line for line in text.splitlines() if "tty/im03.tif" in line]
    assert len(lines) == 1  # each log line once, above the bar
