"""Integration tests: the programs against real servers, proxies, packages and install trees."""
