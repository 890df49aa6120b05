"""Certificates stored in files and folders."""
