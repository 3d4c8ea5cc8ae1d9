"""Masks to georeferenced ship polygons: vectorise, merge across tile seams, attributes, writers."""
