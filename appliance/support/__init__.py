"""The support bundle: a node's diagnostics in one archive an operator can carry off the site."""
