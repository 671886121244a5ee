"""Typed samples, datasets, transforms and the embedded demo dataset."""
