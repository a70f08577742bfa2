"""The power-cut tier: the frozen updater in a QEMU guest whose power is cut (scripts/powercut)."""
