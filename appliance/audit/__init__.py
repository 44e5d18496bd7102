"""The no-ML audit of a bundle, of a source tree and of a running server."""
