"""pltf: the golden path behind the "Create" button of an internal developer portal."""

__version__ = "0.1.0"
