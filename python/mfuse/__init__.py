"""mfuse: feature amplification and multiplicative fusion for two-stream action recognition.

A reproduction of Park, Han, Berg and Berg, "Combining Multiple Sources of Knowledge in Deep CNNs for
Action Recognition" (WACV 2016) on a Caffe 1.0 fork.
"""
from __future__ import annotations

__version__ = "0.1.0"
