"""discourse: code interview transcripts against a discourse codebook, offline."""

__version__ = "0.1.0"
