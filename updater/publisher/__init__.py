"""The publisher: the vendor's tools and server (``opusi-repo``): signed repository,
publishing, license registry, the update server. Never frozen into a customer's program.
"""
