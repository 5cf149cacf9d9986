"""Matrix adapter package: matrix-nio with end-to-end encryption behind the bridge's
`ChatAdapter` seam.  Exports the platform spec; the adapter itself is
`adapters.matrix.adapter`."""

from adapters.matrix.spec import PLATFORM

__all__ = ["PLATFORM"]
