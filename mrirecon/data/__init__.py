"""Typed samples, datasets, transforms and the embedded demo dataset."""

from mrirecon.data.demo import demo_root  # noqa: E402,F401  (light: numpy only; datasets live in data.fastmri)
