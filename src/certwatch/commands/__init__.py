"""Command groups of the `certwatch` command line beyond `check`."""
