"""I/O that more than one program uses: configuration, transport and downloads, trust, packages,
the operating system, progress, and the seam every file change of an install goes through.

Imports the core and third-party libraries (each behind one module), never a program's folder.
"""
