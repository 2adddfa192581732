"""The application whose trail ``bench/scale.py`` writes: its models, their admin, a URLconf."""
