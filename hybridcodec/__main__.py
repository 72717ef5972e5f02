"""``python -m hybridcodec`` and the ``hybridcodec`` console script: the command line.

Ctrl-C (or SIGTERM) must end even the start-up quietly (130 / 143, one line, no
traceback), so the signal handlers go in before the CLI module and its imports load.
Nothing here runs on import: a forkserver started by ``--jobs`` imports this module.
"""

import sys


def main() -> int:
    """Install the start-up signal handlers, then run :func:`hybridcodec.cli.main`."""
    from .cancel import exit_on_signal

    exit_on_signal("hybridcodec")
    from .cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
