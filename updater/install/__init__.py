"""The frozen updater (``opusi-INSTALLUpdate``): pre-flight, journal, backup, apply, restore.

Imports the core and ``shared``; never the bootstrap or the vendor's code.
"""
