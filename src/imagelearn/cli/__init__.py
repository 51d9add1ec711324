"""The ``imagelearn`` command line: a thin layer that parses arguments and calls the API."""
