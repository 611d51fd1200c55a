"""Object model shared by every part: resource kinds, metadata helpers,
label selectors, validation, defaults and the YAML/JSON codec.

Objects are plain JSON-shaped dicts in Kubernetes form, so fields netplane
does not implement survive a round trip unchanged. This package imports
nothing else of netplane's.
"""
