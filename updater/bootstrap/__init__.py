"""The host's bootstrap (``opusi-update``): the vendor's rules, then download, verify and start
the newest updater. Imports the core and ``shared``; never ``install`` or ``vendor``.
"""
