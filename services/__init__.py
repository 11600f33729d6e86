"""services: the Bento service, what the image serves (docs/serving.md)."""
