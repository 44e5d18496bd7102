"""The builder's view of the bundle: the format, and the choices only the builder makes.

The format itself (file names, manifest fields, limits, what the node's wheel carries) has one
home, appliance/bundles/bundle_layout.py, because the node reads it too and node code never imports
builder code. It is re-exported here so that a build step reads one module. What follows it is
the builder's alone: the node it builds for and the server image's insides.
"""

from appliance.bundles.bundle_layout import *  # noqa: F403 (the format, re-exported as said above)

# The nodes the bundle targets are NODE_TARGETS (the format). Wheels are chosen for the oldest
# glibc among them, so one manylinux selection serves every target.
TARGET_ARCH = "amd64"
TARGET_GLIBC = (2, 36)  # Debian 12's glibc (Debian 13 has 2.41): manylinux up to 2_36 runs on both
# The server image is the same for every node: its base and its Python (bundle/rootfs.py).
IMAGE_DEBIAN_SUITE = "bookworm"
IMAGE_PYTHON_VERSION = "3.11"

# Inside the server image (its site-packages, IMAGE_SITE_PACKAGES, is part of the format).
IMAGE_USER_ID = 10001
IMAGE_USER = "appliance"
IMAGE_PYTHON = "/usr/bin/python3.11"
IMAGE_DATA_DIR = "/var/lib/appliance"
IMAGE_CONFIG_DIR = "/etc/appliance"
IMAGE_PACK_SIGNERS = "/etc/appliance/pack-trust/pack_signers"
IMAGE_PORT = 8080
# The prefix of the image's own labels (docs/building.md): reverse DNS under .localhost, a name
# reserved for no one (RFC 6761), as the image's name localhost/appliance-server says it comes
# from no registry. The project owns no domain; one that does replaces it here.
IMAGE_LABEL_PREFIX = "localhost.appliance."
