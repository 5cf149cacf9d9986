"""Matrix adapter package: matrix-nio with end-to-end encryption behind the bridge's
`ChatAdapter` seam."""

from adapters.matrix.adapter import MatrixAdapter
from adapters.matrix.limits import RateLimit

__all__ = ["MatrixAdapter", "RateLimit"]
