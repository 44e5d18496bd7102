"""Result packs: their format, reading one safely, the schema registry and the data checks."""
