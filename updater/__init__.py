"""The opus i Internet update: vendor tools, update server, bootstrap and updater."""

__version__ = "0.1.0"
