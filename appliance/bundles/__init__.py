"""The install bundle as the node reads it: its format, SHA256SUMS, the reader, verification."""
