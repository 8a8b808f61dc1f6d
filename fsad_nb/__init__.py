"""Few-shot industrial anomaly detection, derived from the papers in notebooks and usable as a library

Modules:

- `fsad_nb.backbones`: Frozen ImageNet networks cut into three stages (strides 4, 8, 16), the normalisation their weights expect, locally aware patch features and the multi-scale embedding every detector starts from."""

__version__ = "0.1.0"
