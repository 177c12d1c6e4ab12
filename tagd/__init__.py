"""tagd: tags photos with a CNN, refines the tags, writes them into the files, indexes them."""

__version__ = "0.7.0"
