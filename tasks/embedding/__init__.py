"""Text embedding: the project's TF Hub modules, the USE build, the embed stage and its cache."""
