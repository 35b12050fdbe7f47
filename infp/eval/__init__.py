"""Measurements on generated faces: identity (shape) distance, mouth opening, image metrics."""
