"""The ``fashionmlp`` command line: a thin front end over the public API.

Commands, one module each: ``train`` (a recipe, to a run folder; ``--seeds`` for several),
``evaluate`` (a run or weights on the test set), ``predict`` (image files), ``export``
(ONNX), ``sweep`` (a recipe tuned on Optuna) and ``compare`` (runs and studies side by
side). Every failure
the library reports becomes one line on stderr and an exit status: 2 for a mistake on the
command line, 1 for a failed run, 130 or 143 when stopped by Ctrl-C or SIGTERM;
``--debug`` shows the traceback instead.

Parsing imports nothing heavy: ``fashionmlp --help``, ``--version`` and a usage mistake
answer without importing torch; each command imports what it uses when it runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..errors import FashionMLPError, InvalidArgumentError
from . import compare, evaluate, export, predict, sweep, train
from .common import Interrupted, Parser, fail, one_line_warnings, startup_signals

__all__ = ["build_parser", "main", "run"]

#: The commands, in the order ``--help`` lists them; each module makes its options'
#: ``PARSER`` as it is imported, says what it does in ``HELP`` and ``DESCRIPTION``, and does
#: it in ``run(args)``.
COMMANDS = (train, evaluate, predict, export, sweep, compare)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fashionmlp`` command."""
    parser = Parser(prog="fashionmlp", description="Train and evaluate an MLP on FashionMNIST.")
    parser.add_argument("--version", action="version", version=f"fashionmlp {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback when something fails"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        name = command.__name__.rpartition(".")[2]
        commands.add_parser(
            name, parents=[command.PARSER], help=command.HELP, description=command.DESCRIPTION
        ).set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    The status is 0 for success, 2 for a mistake on the command line (found by argparse, or
    once the options are checked: an option value the library refuses, a device this
    machine lacks, a run folder that cannot be used as asked), 1 for a failed run, and
    130 or 143 when stopped by a signal; Ctrl-C at any moment gives one line, not a
    traceback.
    """
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        # MLflow logs its store's table making at INFO, noise among a run's lines; a level
        # the user set is kept (worker processes inherit it).
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        with startup_signals(), one_line_warnings():
            status: int = args.handler(args)
            return status
    except Interrupted as exc:
        if debug:
            raise
        fail("interrupted")
        return 128 + exc.signal_number
    except InvalidArgumentError as exc:
        if debug:
            raise
        fail(str(exc))
        return 2
    except FashionMLPError as exc:
        if debug:
            raise
        fail(str(exc))
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        fail("interrupted")
        return 128 + signal.SIGINT
    except BrokenPipeError:  # `fashionmlp compare ... | head`: the reader has had enough
        # Python's documented remedy: point stdout at devnull so that its flush at exit
        # does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE (13), as shells report it; Windows has no SIGPIPE


def run() -> NoReturn:
    """The ``fashionmlp`` program: :func:`main`, then exit with its status.

    Once the command is over, a late Ctrl-C is ignored, so that it cannot turn the status
    just decided into a traceback while the interpreter shuts down. Under ``torchrun`` the
    process exits at once (``os._exit``), skipping the interpreter's shutdown.
    """
    status = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under torchrun, leave without the interpreter's shutdown: gloo's threads live to
        # the end of the process, and one still releasing the last collective's tensors
        # when Python finalizes needs the GIL, which then aborts the process (exit -6,
        # "terminate called without an active exception") after a complete run. Every
        # file of the run is closed by now; only the standard streams need flushing.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
