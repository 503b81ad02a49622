"""Synthetic-image generators for the synthesize stage (documents, ...)."""
