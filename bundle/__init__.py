"""Building the offline install bundle: layout constants, checksums, signature, archive."""
