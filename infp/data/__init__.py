"""Clip corpora in the DyConv format: manifest reading, preparation, sample corpus, index."""
