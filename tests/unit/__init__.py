"""Unit tests of the pure core and of the import rules between the folders."""
