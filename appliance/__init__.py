"""Node side of the offline analytics appliance: verify, import and serve precomputed ML results."""

__version__ = "0.1.0"
# Names the git commit the server image was built from: the image build sets it in the image's
# environment (its OCI revision label says the same), and /metrics shows it in appliance_build_info.
REVISION_ENV = "APPLIANCE_REVISION"
