"""SHA256SUMS for the sign step, written with the node's own writer and reader.

The format's one home is appliance/bundles/bundle_checksums.py, so that what the builder writes is
exactly what `appliance verify` parses on the node; the sign step takes it from here.
"""

from appliance.bundles.bundle_checksums import parse_checksums, write_checksums

__all__ = ["parse_checksums", "write_checksums"]
