"""Frozen entry point of opusi-INSTALLUpdate."""

import sys

from updater.install.cli import main

if __name__ == "__main__":
    sys.exit(main())
