"""Per-image fitting of the face model to landmarks and pixels."""
