"""Wizard pages, one module each."""
