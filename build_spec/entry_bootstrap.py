"""Frozen entry point of opusi-update (the bootstrap a host app calls)."""

import sys

from updater.bootstrap.cli import main

if __name__ == "__main__":
    sys.exit(main())
