"""Render results: a Rich table, JSON, or one Nagios plugin status line."""
