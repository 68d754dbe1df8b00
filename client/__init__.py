"""Clients of the service: the `pneumo` command line and the Python client."""
