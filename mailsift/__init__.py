"""mailsift: an ML-centred email spam filter."""

__version__ = "0.1.0"
