"""`keras-unet-sr`: a thin command line over the library functions.

One module per command (`fit`, `tune`, `predict`, `evaluate`, `export`,
`serve`, `build-dataset`), each with `register(commands)`; shared options in
`options`. Every command turns bad input into one line on stderr naming the
file or option and the problem, and exits non-zero (2 for bad input, 1 for an
unexpected failure; `--debug` shows the traceback instead). Nothing heavy is
imported before a command runs, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keras_unet_sr.cli import (
    build_dataset,
    evaluate,
    export,
    fit,
    predict,
    serve,
    tune,
)
from keras_unet_sr.cli.startup import quiet_tensorflow

QUIET_HELP = "no progress bars or progress lines"
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1

COMMANDS = (fit, tune, predict, evaluate, export, serve, build_dataset)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-unet-sr",
        description="U-Net super-resolution for fluorescence microscopy: "
        "train, tune, predict, evaluate, export to TF-Serving and serve.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    for subparser in commands.choices.values():  # also after the command
        subparser.add_argument(
            "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_tensorflow(args.debug)
    from keras_unet_sr import progress
    from keras_unet_sr.errors import UserError

    progress.set_quiet(args.quiet)
    try:
        return args.func(args)
    except UserError as error:
        if args.debug:
            raise
        print(f"keras-unet-sr {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"keras-unet-sr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the last line of defence: one line, no traceback
        if args.debug:
            raise
        from keras_unet_sr.files.atomic import no_room_reason

        reason = no_room_reason(error)
        if reason is not None:  # a disk that takes no more, outside atomic writes
            where = getattr(error, "filename", None) or "a file"
            print(
                f"keras-unet-sr {args.command}: error: {where}: cannot be written: "
                f"{reason}",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        message = str(error).strip().splitlines()
        summary = message[0] if message else ""
        print(
            f"keras-unet-sr {args.command}: error: {type(error).__name__}: {summary} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
