"""`python -m evals.fit NAME [ARGS ...]`: rerun one fit; each module in FITS has `main(argv) -> None`."""

from __future__ import annotations

import importlib
import sys

from evals.fit import FITS


def main() -> None:
    """Dispatch to evals.fit.<name>.main with the remaining arguments."""
    if len(sys.argv) < 2 or sys.argv[1] not in FITS:
        sys.exit(f"usage: python -m evals.fit {{{'|'.join(FITS)}}} [ARGS ...]")
    importlib.import_module(f"evals.fit.{sys.argv[1]}").main(sys.argv[2:])


if __name__ == "__main__":
    main()
