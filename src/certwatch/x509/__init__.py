"""Pure functions on certificates: facts, trust, hostname match, findings.

Nothing here does I/O or reads the clock; callers pass `now` in.
"""
