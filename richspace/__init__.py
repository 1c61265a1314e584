"""richspace: find, refine and generate with text embeddings that mix concepts (RichSpace, Algorithms 2-3)."""

from richspace.finder import Interpolation, find_chain, find_interpolation, interpolate, perpendicular_foot, phi_cos

__all__ = ["Interpolation", "find_chain", "find_interpolation", "interpolate", "perpendicular_foot", "phi_cos"]
__version__ = "0.1.0"
