"""Offline, private question answering over your own documents, built for Chinese."""

__version__ = "0.1.0"
