"""Helpers the tests share: servers, relays, proxies, trees, processes, the frozen build."""
